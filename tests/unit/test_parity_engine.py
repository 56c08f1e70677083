"""The parity engine on synthetic outputs: matching, the borderline rule, and the tiers."""
from __future__ import annotations

import numpy as np
import pytest

from validation.parity import DETECT, TIERS, ParityInput, compare, match
from zoo.core.model.processing import Detection

LABELS = ("BACKGROUND", "face")


def det(box, score, label="face"):
    return Detection(tuple(float(v) for v in box), float(score), label, 1)


def test_match_is_one_to_one_and_greedy_by_iou():
    ref = [det((0, 0, 10, 10), 0.9), det((20, 20, 30, 30), 0.9)]
    got = [det((0, 0, 10, 10), 0.91), det((0, 0, 10, 10.2), 0.9)]  # two candidates for the first face
    c = match(ref, got, min_iou=0.5, threshold=0.7, margin=1e-3)
    assert (c["reference"], c["matched"], c["missed"], c["extra"]) == (2, 1, 1, 1)
    assert c["min_iou"] == pytest.approx(1.0)
    assert c["max_score_change"] == pytest.approx(0.01)


def test_borderline_detections_are_neither_missed_nor_extra():
    ref = [det((0, 0, 10, 10), 0.7005)]  # within the margin of the 0.7 threshold
    got = [det((50, 50, 60, 60), 0.7004)]
    c = match(ref, got, min_iou=0.5, threshold=0.7, margin=1e-3)
    assert (c["reference"], c["missed"], c["extra"], c["borderline"]) == (0, 0, 0, 2)
    c = match(ref, got, min_iou=0.5, threshold=0.7, margin=1e-5)
    assert (c["missed"], c["extra"], c["borderline"]) == (1, 1, 0)


def test_labels_never_match_across_classes():
    c = match([det((0, 0, 10, 10), 0.9, "face")], [det((0, 0, 10, 10), 0.9, "mask")], 0.5, 0.7, 1e-3)
    assert (c["matched"], c["missed"], c["extra"]) == (0, 1, 1)


def _outputs(n=2, p=8, rng=None):
    rng = rng or np.random.default_rng(0)
    fg = np.full((n, p), 0.01, np.float32)
    fg[:, 0] = 0.95  # one face per image
    scores = np.stack([1 - fg, fg], -1).astype(np.float32)
    boxes = np.tile(np.array([0.1, 0.1, 0.4, 0.5], np.float32), (n, p, 1))
    boxes[:, 1:] = rng.uniform(0.5, 0.6, (n, p - 1, 4)).astype(np.float32)
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2])
    return {"scores": scores, "boxes": boxes}


def _data(n=2):
    return ParityInput(np.zeros((n, 3, 4, 4), np.float32), [f"img{i}.jpg" for i in range(n)], [(200, 100)] * n)


def test_identical_outputs_pass_every_tier_and_record_it():
    ref = _outputs()
    for precision in ("fp32", "fp16", "int8", "int8-io", "int8-weight"):
        r = compare(ref, {k: v.copy() for k, v in ref.items()}, _data(), LABELS, 8, precision)
        assert r["passed"], r["failures"]
        assert r["tier"] == TIERS[precision.split("-")[0]]
        assert r["detections"]["matched"] == r["detections"]["reference"] == 2


def test_fp32_tensor_drift_fails_with_the_output_and_image_named():
    ref = _outputs()
    got = {k: v.copy() for k, v in ref.items()}
    got["boxes"][1, 3, 0] -= 0.01
    r = compare(ref, got, _data(), LABELS, 8, "fp32")
    assert not r["passed"]
    assert any("output 'boxes' diverges" in f and "img1.jpg" in f for f in r["failures"])
    # int8 does not gate tensors: the same drift on a non-detected prior passes there
    assert compare(ref, got, _data(), LABELS, 8, "int8")["passed"]


def test_a_missed_face_fails_the_detection_tier():
    ref = _outputs()
    got = {k: v.copy() for k, v in ref.items()}
    got["scores"][0, 0] = [0.9, 0.1]  # the face of image 0 is gone
    r = compare(ref, got, _data(), LABELS, 8, "int8")
    assert not r["passed"]
    assert r["detections"]["missed"] == 1 and r["detections"]["recall"] == 0.5
    assert any(f.startswith("detections: 1/2 matched") for f in r["failures"])


def test_invariants_catch_nan_and_bad_rows():
    ref = _outputs()
    got = {k: v.copy() for k, v in ref.items()}
    got["scores"][0, 5] = [0.7, 0.7]
    got["boxes"][1, 6, 0] = np.nan
    r = compare(ref, got, _data(), LABELS, 8, "fp16")
    inv = r["invariants"]["failures"]
    assert any("NaN" in f for f in inv) and any("sum to 1" in f for f in inv)
    assert not r["passed"]


def test_detect_settings_are_the_originals():
    assert DETECT == {"score_threshold": 0.7, "iou_threshold": 0.3, "candidate_size": 200}
