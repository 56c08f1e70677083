"""Edges of the measuring stick that the mutation run of issue 40 found untested: the softmax check's
arithmetic and message, decode's float32 compute, IoU's bounds, the face-rich calibration order and the
pull record's text. Values worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from zoo.core.meta import ArtifactMeta
from zoo.core.model import priors as P
from zoo.core.model.processing import decode, iou_matrix, softmax_error, softmax_problem
from zoo.core.runtime import Runner
from zoo.exporters.base import ExportRequest
from zoo.pipeline.verify import pull_record_text


def test_softmax_error_of_no_rows_is_zero():
    assert softmax_error(np.zeros((0, 2), np.float32)) == 0.0
    assert softmax_error(np.zeros((1, 0, 2), np.float32)) == 0.0


def test_softmax_error_sums_in_float64_whatever_the_dtype():
    # 0.5 + 0.500488 (both exact in float16) is 1.000488 exactly; float16 arithmetic rounds the sum to 1.0
    row = np.array([[0.5, 0.50048828125]], np.float16)
    assert float(row.sum(-1)[0]) == 1.0  # what summing in the input's dtype would say
    assert softmax_error(row) == 0.00048828125


def test_softmax_problem_names_the_base_precision_of_a_flavour():
    rows = np.array([[0.7, 0.5]], np.float32)  # off by 0.2
    assert softmax_problem(rows, "int8-io") == ("score rows do not sum to 1 (worst off by 0.2, more than the 0.1 "
                                                "int8 allows)")
    assert softmax_problem(np.array([[0.52, 0.5]], np.float32), "int8-weight") is None  # 0.02 <= 0.1
    assert softmax_problem(np.array([[0.52, 0.5]], np.float32), "fp16").endswith("the 0.01 fp16 allows)")


def test_decode_computes_in_float32_whatever_the_input_dtype():
    rng = np.random.default_rng(3)
    priors = P.generate_priors(320, 240)
    loc = rng.normal(0, 2, (2, len(priors), 4))  # float64
    got = decode(loc, priors)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, decode(loc.astype(np.float32), priors))


def test_iou_of_small_boxes_with_themselves_is_one_and_never_more():
    rng = np.random.default_rng(4)
    tl = rng.uniform(0, 0.5, (50, 2))
    boxes = np.concatenate([tl, tl + rng.uniform(0.01, 0.4, (50, 2))], 1)  # normalised: sides < 1
    m = iou_matrix(boxes, boxes)
    assert (m <= 1.0).all()
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-9)
    half = np.array([[0.0, 0.0, 0.5, 0.5]])
    assert iou_matrix(half, np.array([[0.0, 0.0, 0.25, 0.5]]))[0, 0] == pytest.approx(0.5)


class Faces(Runner):
    """A runner whose detections are set by each image's colour: an image of grey level g holds g // 40 faces
    (confident, apart) -- the order `face_rich` must sort by."""

    name = "faces"

    def _load(self):
        pass

    def _release(self):
        pass

    def _run(self, x):
        p = self.meta.prior_count
        scores = np.zeros((len(x), p, 2), np.float32)
        scores[..., 0] = 1.0
        boxes = np.tile(np.array([0.0, 0.0, 0.01, 0.01], np.float32), (len(x), p, 1))
        for i, img in enumerate(x):
            grey = int(round(float(img.mean()) * 128 + 127))
            for f in range(grey // 40):
                scores[i, f] = (0.01, 0.99)
                boxes[i, f] = (0.2 * f, 0.1, 0.2 * f + 0.15, 0.3)
        return [("scores", scores), ("boxes", boxes)]


def test_face_rich_orders_by_faces_then_name_then_path(tmp_path):
    meta = ArtifactMeta(model_id="rfb-320", arch="rfb", input_size=(320, 240), labels=("BACKGROUND", "face"),
                        head="decoded", checkpoint_sha256="0" * 64, target="pytorch")
    grey = {"a.jpg": 40, "z.jpg": 160, "x/b.jpg": 120, "x-y/b.jpg": 120, "c.jpg": 80}  # 1, 4, 3, 3, 2 faces
    imgs = []
    for rel, g in grey.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), np.full((240, 320, 3), g, np.uint8))
        imgs.append(tmp_path / rel)
    req = ExportRequest(meta=meta, state_dict={}, out_dir=tmp_path, stem="x")
    got = req.face_rich(Faces(meta), imgs, k=4)
    # most faces first; a tie by file name, then by the path's text ("x-y/" sorts before "x/", unlike Path order)
    assert got == [(tmp_path / "z.jpg", 4), (tmp_path / "x-y/b.jpg", 3), (tmp_path / "x/b.jpg", 3), (tmp_path / "c.jpg", 2)]


def test_the_pull_record_is_indented_json_with_one_newline():
    text = pull_record_text("oci://h/r:t", "sha256:" + "a" * 64, ["mnn"], ["fp32"], ["b", "a"])
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2) + "\n" and doc["left_out"] == ["a", "b"]


def test_encode_is_decodes_inverse():
    """Issue 39: the calibration scorer measures a decoded head's box change in raw-offset units (`encode`)."""
    from zoo.core.model.processing import encode

    rng = np.random.default_rng(5)
    priors = P.generate_priors(320, 240)
    loc = rng.normal(0, 1.5, (2, len(priors), 4)).astype(np.float32)
    back = encode(decode(loc, priors), priors)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, loc, atol=2e-3)
    # by hand: a box twice its prior's width, centred one prior width right
    cx, cy, w, h = priors[7]
    box = np.array([[cx + w - w, cy - h / 2, cx + w + w, cy + h / 2]], np.float32)
    np.testing.assert_allclose(encode(box, priors[7:8]), [[10.0, 0.0, np.log(2) / 0.2, 0.0]], atol=1e-4)
    # a side of zero or less is taken as 1e-6 of the prior's (its own side: w and h differ at 320x240): finite
    got = encode(np.array([[0.5, 0.5, 0.4, 0.4]], np.float32), priors[:1])
    np.testing.assert_allclose(got[0, 2:], np.log(1e-6) / 0.2, rtol=1e-5)


def test_postprocess_goes_on_past_an_empty_class_and_top_k_counts_all_classes():
    from zoo.core.model.processing import postprocess

    labels = ("BACKGROUND", "a", "b")
    scores = np.zeros((4, 3), np.float32)
    scores[:, 0] = 1.0
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.1, 0.6, 0.3, 0.8], [0.6, 0.1, 0.8, 0.3]], np.float32)
    scores[0] = (0.1, 0.0, 0.9)  # class a: nothing above the threshold; class b: two faces apart
    scores[1] = (0.2, 0.0, 0.8)
    got = postprocess(scores, boxes, 100, 100, labels)
    assert [(d.label, round(d.score, 2)) for d in got] == [("b", 0.9), ("b", 0.8)]
    scores[2] = (0.15, 0.85, 0.0)  # now class a has one
    assert [d.label for d in postprocess(scores, boxes, 100, 100, labels, top_k=1)] == ["b"]  # one over all classes
    assert len(postprocess(scores, boxes, 100, 100, labels, top_k=0)) == 3  # 0: no limit, like -1
