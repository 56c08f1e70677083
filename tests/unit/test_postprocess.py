"""Post-processing (IoU, hard NMS, thresholds, scaling) against values worked out by hand: the tests that
compare `zoo detect` with the original's outputs run our post-processing on both sides, so they cannot
see a fault in it; these can."""
from __future__ import annotations

import numpy as np
import pytest

from zoo.core.model.processing import Detection, hard_nms, iou, iou_matrix, postprocess


def test_iou_by_hand():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    boxes = np.array([[1.0, 1.0, 3.0, 3.0],    # 1 / 7
                      [0.0, 0.0, 2.0, 2.0],    # itself: 1
                      [2.0, 2.0, 4.0, 4.0],    # touching: 0
                      [0.0, 0.0, 1.0, 4.0],    # inter 2, union 4 + 4 - 2 = 6: 1/3
                      [3.0, 0.0, 1.0, 5.0]])   # inverted box: no area, no overlap
    got = iou(a, boxes)
    want = [1 / 7, 1.0, 0.0, 1 / 3, 0.0]
    np.testing.assert_allclose(got, want, atol=1e-5)  # the 1e-5 in the denominator moves them by < 1e-5
    assert got[1] < 1.0 and got[1] > 1 - 1e-5  # the epsilon is there, and small
    np.testing.assert_allclose(iou_matrix(a[None], boxes)[0], want, atol=1e-9)
    # away from the origin (corners, not sizes, are what is stored)
    np.testing.assert_allclose(iou(np.array([1.0, 1.0, 3.0, 3.0]), np.array([[2.0, 2.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]])),
                               [1 / 7, 1.0], atol=1e-5)
    # tall and wide boxes: each side counts on its own axis
    np.testing.assert_allclose(iou(np.array([0.0, 0.0, 4.0, 1.0]), np.array([[0.0, 0.0, 1.0, 4.0]])), [1 / 7], atol=1e-5)


def test_hard_nms_keeps_at_the_threshold_and_drops_above():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 4.9], [20, 20, 30, 30]], float)
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.6])
    # box 1 equals box 0 (IoU 1: dropped); box 2 overlaps 0 by 1/3; box 3 by 0.49; box 4 nothing
    assert hard_nms(boxes, scores, 0.5, 200).tolist() == [0, 2, 3, 4]
    assert hard_nms(boxes, scores, 0.3, 200).tolist() == [0, 4]
    keep = hard_nms(boxes, scores, 1 / 3 + 1e-3, 200)  # 1/3 (less the epsilon) is not above: kept
    assert keep.tolist() == [0, 2, 4]
    assert keep.dtype == np.int64
    assert hard_nms(boxes, scores, 0.5, 200, top_k=2).tolist() == [0, 2]
    assert hard_nms(boxes, scores, 0.5, 200, top_k=1).tolist() == [0]
    assert hard_nms(boxes, scores, 0.5, 200, top_k=0).tolist() == [0, 2, 3, 4]  # 0 or less: no limit
    assert hard_nms(boxes, scores, 0.5, 2).tolist() == [0, 2]  # only the 2 best are candidates
    empty = hard_nms(boxes[:0], scores[:0], 0.5, 200)
    assert empty.tolist() == [] and empty.dtype == np.int64


def test_hard_nms_breaks_score_ties_by_index():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.8, 0.8, 0.8, 0.8])
    assert hard_nms(boxes, scores, 0.3, 200).tolist() == [0, 3]
    assert hard_nms(boxes[::-1].copy(), scores, 0.3, 200).tolist() == [0, 1]


def test_hard_nms_is_stable_among_many_equal_scores():
    """Many boxes on a few score levels (more than an insertion sort handles): equal scores keep the
    boxes' own order, as the stable sort the original's NumPy code relies on."""
    n = 100
    scores = np.round(np.random.default_rng(0).uniform(0.7, 0.9, n), 1)
    boxes = np.array([[3 * i, 0, 3 * i + 2, 2] for i in range(n)], float)  # none overlaps
    keep = hard_nms(boxes, scores, 0.3, 200)
    assert keep.tolist() == sorted(range(n), key=lambda i: (-scores[i], i))


def _two_class_outputs():
    p = 6
    scores = np.zeros((p, 3), np.float32)
    scores[:, 0] = 1
    boxes = np.zeros((p, 4), np.float32)
    boxes[0], scores[0] = [0.1, 0.1, 0.3, 0.5], [0.05, 0.9, 0.05]      # face 0.9
    boxes[1], scores[1] = [0.1, 0.1, 0.3, 0.52], [0.15, 0.85, 0.0]     # same face, lower: suppressed
    boxes[2], scores[2] = [0.6, 0.6, 0.8, 0.9], [0.3, 0.7, 0.0]        # exactly the threshold: not above
    boxes[3], scores[3] = [0.6, 0.1, 0.9, 0.4], [0.2, 0.0, 0.8]        # class 2, 0.8
    boxes[4], scores[4] = [0.6, 0.1, 0.9, 0.4], [0.25, 0.75, 0.0]      # class 1 over class 2's box: no cross-class NMS
    boxes[5], scores[5] = [0.0, 0.0, 0.1, 0.1], [0.29, 0.71, 0.0]      # 0.71: above
    return scores, boxes


def test_postprocess_thresholds_classes_scaling_and_order():
    scores, boxes = _two_class_outputs()
    dets = postprocess(scores, boxes, 200, 100, ["bg", "face", "mask"])
    assert [(d.label, d.class_id, round(d.score, 3)) for d in dets] == [
        ("face", 1, 0.9), ("mask", 2, 0.8), ("face", 1, 0.75), ("face", 1, 0.71)]
    assert dets[0].box == pytest.approx((20.0, 10.0, 60.0, 50.0))  # x by the width, y by the height
    assert all(isinstance(d, Detection) and isinstance(d.score, float) for d in dets)
    # batched (1, P, K) input is the same image
    assert postprocess(scores[None], boxes[None], 200, 100, ["bg", "face", "mask"]) == dets
    # the defaults are the original's: 0.7, 0.3, 200 candidates
    assert postprocess(scores, boxes, 200, 100, ["bg", "face", "mask"], 0.7, 0.3, 200) == dets
    assert len(postprocess(scores, boxes, 200, 100, ["bg", "face", "mask"], score_threshold=0.72)) == 3
    assert len(postprocess(scores, boxes, 200, 100, ["bg", "face", "mask"], top_k=2)) == 2
    # a label list shorter than the classes: the class id as the label
    assert [d.label for d in postprocess(scores, boxes, 200, 100, ["bg", "face"])][1] == "2"
    # NMS at 0.3 by default: with a looser IoU the second face box survives
    assert len(postprocess(scores, boxes, 200, 100, ["bg", "face", "mask"], iou_threshold=0.99)) == 5


def test_postprocess_candidate_size_default_is_200():
    n = 250
    boxes = np.array([[i / n, 0.0, (i + 0.8) / n, 0.1] for i in range(n)], np.float32)
    scores = np.stack([np.full(n, 0.1), np.linspace(0.95, 0.75, n)], 1).astype(np.float32)
    assert len(postprocess(scores, boxes, 1000, 100, ["bg", "face"])) == 200
    assert len(postprocess(scores, boxes, 1000, 100, ["bg", "face"], candidate_size=201)) == 201


def test_detection_json_rounds_as_documented():
    d = Detection((1.23456, 2.0, 3.999, 4.005), 0.9876543, "face", 1)
    assert d.to_json() == {"box": [1.23, 2.0, 4.0, 4.0], "score": 0.98765, "label": "face"}


def test_decode_by_the_documented_formula():
    """ultraface-model.md: cx = l0*0.1*pw + pcx, cy = l1*0.1*ph + pcy, w = exp(l2*0.2)*pw, h = exp(l3*0.2)*ph,
    then corners; worked out here for two priors, batched (N, P, 4) and not."""
    from zoo.core.model.processing import decode

    priors = np.array([[0.5, 0.4, 0.2, 0.1], [0.25, 0.75, 0.05, 0.3]], np.float32)
    loc = np.array([[1.0, -2.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0]], np.float64)  # float64 in: float32 out
    cx, cy = 1.0 * 0.1 * 0.2 + 0.5, -2.0 * 0.1 * 0.1 + 0.4
    w, h = np.exp(0.5 * 0.2) * 0.2, np.exp(-1.0 * 0.2) * 0.1
    want = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], [0.225, 0.6, 0.275, 0.9]])
    got = decode(loc, priors)
    assert got.dtype == np.float32 and got.shape == (2, 4)
    np.testing.assert_allclose(got, want, atol=1e-6)
    batched = decode(np.stack([loc, loc * 0]), priors)
    assert batched.shape == (2, 2, 4)
    np.testing.assert_allclose(batched[0], want, atol=1e-6)
    np.testing.assert_allclose(batched[1, 1], want[1], atol=1e-6)
