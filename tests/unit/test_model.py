"""The model core without shared material: priors, processing, networks at any size and class count."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.core.model import priors as P
from zoo.core.model.nets import UltraFace
from zoo.core.model.processing import hard_nms, postprocess

DOC_SIZES = [(128, 96, 708), (160, 120, 1118), (320, 240, 4420), (480, 360, 9984), (640, 480, 17640), (1280, 960, 70500)]


@pytest.mark.parametrize("w,h,count", DOC_SIZES)
def test_prior_count_all_documented_sizes(w, h, count):
    pri = P.generate_priors(w, h)
    assert pri.shape == (count, 4) == (P.prior_count(w, h), 4)
    expected = sum(math.ceil(w / s) * math.ceil(h / s) * len(m) for s, m in zip(P.STRIDES, P.MIN_BOXES))
    assert count == expected
    assert pri.min() >= 0 and pri.max() <= 1


def test_prior_order_and_values():
    pri = P.generate_priors(320, 240)
    # level 0, row 0, column 0: the three min sizes in order
    np.testing.assert_allclose(pri[0], [0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240], rtol=1e-6)
    np.testing.assert_allclose(pri[2], [0.5 / 40, 0.5 / 30, 24 / 320, 24 / 240], rtol=1e-6)
    # column advances before row
    np.testing.assert_allclose(pri[3][:2], [1.5 / 40, 0.5 / 30], rtol=1e-6)
    # last level: 256-pixel boxes clamp to 1 in height (256/240 > 1)
    assert pri[-1][3] == 1.0



def test_any_input_size_and_class_count():
    for arch in ("slim", "rfb"):
        for w, h in [(160, 120), (333, 257)]:
            net = UltraFace(arch, num_classes=3, width=w, height=h).eval()
            with torch.inference_mode():
                s, b = net(torch.zeros(2, 3, h, w))
            assert s.shape == (2, P.prior_count(w, h), 3) and b.shape == (2, P.prior_count(w, h), 4)
            torch.testing.assert_close(s.sum(-1), torch.ones(2, P.prior_count(w, h)))


def test_hard_nms_and_postprocess():
    boxes = np.array([[0, 0, 0.5, 0.5], [0.01, 0.01, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.2, 0.2]], np.float32)
    scores = np.array([0.9, 0.95, 0.8, 0.75], np.float32)
    keep = hard_nms(boxes, scores, 0.3, candidate_size=200)
    assert keep.tolist() == [1, 2, 3]  # 0 overlaps 1 (IoU ~0.96) and loses; 3 overlaps 1 by 0.16 < 0.3
    assert hard_nms(boxes, scores, 0.3, candidate_size=2).tolist() == [1]  # only the 2 best are candidates
    assert hard_nms(boxes, scores, 0.3, 200, top_k=2).tolist() == [1, 2]
    sc = np.stack([1 - scores, scores], 1)
    dets = postprocess(sc, boxes, 200, 100, ["BACKGROUND", "face"], score_threshold=0.78)
    assert [d.score for d in dets] == pytest.approx([0.95, 0.8])
    assert dets[0].box == pytest.approx((2.0, 1.0, 100.0, 50.0))
    assert dets[0].label == "face"
