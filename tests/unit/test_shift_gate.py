"""The shift gate (mosaics of the parity photos, parity.shift) and the strict counts in the tiers, on
synthetic images and outputs (no runtime): the mosaics' plan and pixels, the pooled verdict, the
strict rule, the shift's evidence under --min-evidence, and the one softmax check."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoo.core import shift
from zoo.core.integrity import MISMATCH, output_problem
from zoo.core.meta import ArtifactMeta
from zoo.core.model import priors as P
from zoo.core.model.processing import SOFTMAX_TOL, softmax_problem
from zoo.validation.parity import (
    RULES,
    TIERS,
    ParityInput,
    detection_verdict,
    grade,
    shift as shift_verdict,
    shift_applies,
    shift_min_evidence,
    weak_evidence,
)

LABELS = ("BACKGROUND", "face")


# ----------------------------------------------------------------------------- the mosaics


@given(n=st.integers(1, 40))
def test_every_photo_is_in_exactly_one_mosaic_of_every_layout(n):
    plan = shift.plan(n)
    for g in shift.LAYOUTS:
        ms = [m for m in plan if m.layout == f"{g}x{g}"]
        assert len(ms) == -(-n // (g * g))
        assert sorted(i for m in ms for i in m.photos) == list(range(n))
        assert all(len(m.photos) <= g * g for m in ms)
        assert [m.index for m in ms] == list(range(1, len(ms) + 1))


def test_sixteen_photos_make_four_2x2_and_two_3x3_mosaics():
    plan = shift.plan(16)
    assert [m.name for m in plan] == ["mosaic2x2-1", "mosaic2x2-2", "mosaic2x2-3", "mosaic2x2-4",
                                      "mosaic3x3-1", "mosaic3x3-2"]
    assert plan[-1].photos == tuple(range(9, 16))  # two tiles left black


def _photo(tmp_path, name, colour, size=(90, 60)):
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[:] = colour
    img[10:20, 10:30] = 255 - np.array(colour, np.uint8)  # something that a resize must move with the tile
    p = tmp_path / name
    cv2.imwrite(str(p), img)
    return p


def test_a_mosaic_is_its_photos_resized_into_the_tiles_at_the_input_size(tmp_path):
    paths = [_photo(tmp_path, f"{c}.png", (c * 40, 255 - c * 40, 100)) for c in range(5)]
    x, mosaics, ordered = shift.batch(list(reversed(paths)), 320, 240)  # any order in: the photos by name
    assert ordered == sorted(paths)
    assert x.shape == (len(mosaics), 3, 240, 320) and x.dtype == np.float32
    m = mosaics[0]
    assert m.layout == "2x2" and m.photos == (0, 1, 2, 3)
    img = shift.compose([cv2.imread(str(p)) for p in ordered], m, 320, 240)
    tile = cv2.resize(cv2.imread(str(ordered[3])), (160, 120))
    assert np.array_equal(img[120:, 160:], tile)  # the 4th photo fills the bottom-right tile
    last = [mm for mm in mosaics if mm.layout == "2x2"][-1]
    img = shift.compose([cv2.imread(str(p)) for p in ordered], last, 320, 240)
    assert last.photos == (4,) and not img[:, 160:].any() and not img[120:].any()  # spare tiles black
    # deterministic: the same photos make the same batch
    x2, _, _ = shift.batch(paths, 320, 240)
    assert np.array_equal(x, x2)


def test_3x3_tiles_cover_the_frame_with_the_remainder_spread(tmp_path):
    paths = [_photo(tmp_path, f"{c}.png", (200, 200, 200)) for c in range(9)]
    img = shift.compose([cv2.imread(str(p)) for p in paths], shift.plan(9, (3,))[0], 320, 240)
    assert img.shape == (240, 320, 3) and (img.reshape(-1, 3).max(1) > 0).all()  # no black seam


# ----------------------------------------------------------------------------- strict rule, pooled verdict


def test_tiers_carry_the_strict_rule():
    assert (TIERS["int8"]["strict_min_recall"], TIERS["int8"]["strict_max_extra"]) == (0.97, 0.01)
    assert (TIERS["fp16"]["strict_min_recall"], TIERS["fp16"]["strict_max_extra"]) == (0.99, 0.005)
    assert TIERS["fp32"]["strict_min_recall"] is None  # fp32: every tensor is gated
    assert RULES["shift"]["layouts"] == list(shift.LAYOUTS) and RULES["shift"]["precisions"] == ["fp16", "int8"]


@pytest.mark.parametrize("borderline_missed, borderline_extra, passed", [
    (0, 0, True), (3, 0, True), (4, 0, False), (0, 1, True), (0, 2, False), (3, 1, True)])
def test_int8_strict_rule_on_top_of_the_margin_rule(borderline_missed, borderline_extra, passed):
    # 100 faces, none lost under the margin rule: only the faces the margin kept decide
    counts = {"reference": 100, "matched": 100, "extra": 0, "borderline_missed": borderline_missed,
              "borderline_extra": borderline_extra}
    assert detection_verdict(counts, TIERS["int8"]) is passed
    assert counts["strict"]["matched"] == 100 - borderline_missed
    assert counts["strict"]["extra"] == borderline_extra


def _outputs(n, p=8):
    fg = np.full((n, p), 0.01, np.float32)
    fg[:, 0] = 0.95  # one face per mosaic
    scores = np.stack([1 - fg, fg], -1).astype(np.float32)
    boxes = np.tile(np.array([0.1, 0.1, 0.4, 0.5], np.float32), (n, p, 1))
    boxes[:, 1:] = np.array([0.6, 0.6, 0.62, 0.63], np.float32)
    return {"scores": scores, "boxes": boxes}


def _shift(ref, got, n_photos=400):
    mosaics = shift.plan(n_photos)
    data = ParityInput(np.zeros((len(mosaics), 3, 4, 4), np.float32), [m.name for m in mosaics], [(320, 240)] * len(mosaics))
    return mosaics, shift_verdict(ref, got, data, mosaics, [f"sha{i}" for i in range(n_photos)], LABELS, 8, "int8",
                                  min_evidence=100)


def test_the_shift_verdict_pools_the_layouts_and_applies_the_strict_rule():
    n = len(shift.plan(400))  # 100 2x2 and 45 3x3 mosaics, one face each
    ref = _outputs(n)
    mosaics, r = _shift(ref, {k: v.copy() for k, v in ref.items()})
    assert r["passed"] and r["layouts"] == ["2x2", "3x3"]
    assert r["by_layout"]["2x2"]["reference"] == 100 and r["by_layout"]["3x3"]["reference"] == 45
    assert r["pooled"]["reference"] == 145 and r["evidence"]["faces"] == 145 and r["evidence"]["images"] == n
    assert r["evidence"]["min_faces"] == 50 and r["evidence"]["strong"]
    assert r["evidence"]["gate"][0] == {"name": "mosaic2x2-1", "photos": ["sha0", "sha1", "sha2", "sha3"]}
    assert r["mosaics"] == [m.name for m in mosaics] and r["failures"] == []
    assert r["by_layout"]["2x2"]["mosaics"] == 100 and r["by_layout"]["3x3"]["mosaics"] == 45
    assert r["by_layout"]["2x2"]["passed"] is True and r["by_layout"]["3x3"]["passed"] is True
    assert r["pooled"]["passed"] is True
    # five faces of the 3x3 mosaics drop a hair under the threshold: kept under the margin, lost strictly
    got = {k: v.copy() for k, v in ref.items()}
    for i in range(100, 105):
        got["scores"][i, 0] = [0.32, 0.68]
    _, r = _shift(ref, got)
    assert r["pooled"]["matched"] == 145 and r["pooled"]["strict"]["matched"] == 140
    assert not r["passed"] and r["by_layout"]["3x3"]["strict"]["matched"] == 40
    assert len(r["failures"]) == 1 and r["failures"][0].startswith("shift: detections:")
    assert "strict (no margin) 140/145" in r["failures"][0] and "worst layout 3x3" in r["failures"][0]
    assert r["failures"][0].startswith("shift: detections: on the 2x2+3x3 mosaics of the parity photos, 145/145 matched")
    assert r["by_layout"]["2x2"]["passed"] is True and r["by_layout"]["3x3"]["passed"] is False
    assert r["pooled"]["passed"] is False


def test_a_mosaic_tile_past_the_recorded_photos_is_recorded_as_none():
    """The gate records each tile's photo by sha256; a tile whose photo has no recorded hash is None."""
    n = len(shift.plan(5))
    ref = _outputs(n)
    mosaics = shift.plan(5)
    data = ParityInput(np.zeros((n, 3, 4, 4), np.float32), [m.name for m in mosaics], [(320, 240)] * n)
    r = shift_verdict(ref, {k: v.copy() for k, v in ref.items()}, data, mosaics, ["sha0", "sha1"], LABELS, 8, "int8")
    assert r["evidence"]["gate"][0] == {"name": "mosaic2x2-1", "photos": ["sha0", "sha1", None, None]}


def test_shift_applies_to_fp16_and_int8_only():
    assert shift_applies("int8") and shift_applies("int8-io") and shift_applies("fp16")
    assert not shift_applies("fp32") and not shift_applies("fp32", "nms")
    assert not shift_applies("int8", "nms") and not shift_applies("fp16", "nms")  # the end-to-end NMS graph
    assert shift_applies("int8", "decoded") and shift_applies("uint8-weight", "raw")


def test_the_shift_evidence_is_graded_against_half_of_min_evidence():
    assert shift_min_evidence(250) == 125 and shift_min_evidence(100) == 50 and shift_min_evidence(1) == 1
    result = {"precision": "int8", "evidence": {"faces": 300}, "shift": {"evidence": {"faces": 120}}}
    assert weak_evidence(result, 250)  # the photos are enough, the mosaics are not
    assert not weak_evidence(result, 240)
    g = grade(result, 240)
    assert g["shift"]["evidence"]["min_faces"] == 120 and g["shift"]["evidence"]["strong"]
    assert not weak_evidence({"precision": "fp32", "evidence": {"faces": 0}}, 250)
    assert not weak_evidence({"evidence": {"faces": 0}}, 250)  # no precision recorded: not evidence-ruled
    assert not weak_evidence(None, 250) and not weak_evidence({}, 250)
    assert weak_evidence({"precision": "int8", "evidence": {}}, 1)  # no faces recorded: none
    assert weak_evidence({"precision": "int8", "evidence": {"faces": 5}, "shift": {"evidence": {}}}, 1)
    assert weak_evidence({"precision": "int8", "evidence": {"faces": 5}, "shift": {}}, 1)
    assert not weak_evidence({"precision": "int8", "evidence": {"faces": 5}, "shift": None}, 1)
    g = grade({"precision": "int8", "evidence": {"images": 3}}, 1)  # no faces recorded: not strong
    assert g["evidence"] == {"images": 3, "min_faces": 1, "strong": False}


# ----------------------------------------------------------------------------- one softmax check


def _meta(precision):
    return ArtifactMeta(model_id="rfb-320", arch="rfb", input_size=(320, 240), labels=LABELS, head="decoded",
                        checkpoint_sha256="0" * 64, target="onnx", precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8-io", "int8-weight"])
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_parity_and_the_detect_probe_share_one_softmax_check(precision, factor):
    """A row off by half its precision's tolerance passes both; off by twice it fails both (the probe: MISMATCH)."""
    off = factor * SOFTMAX_TOL[precision.split("-")[0]]
    n = P.prior_count(320, 240)
    priors = P.generate_priors(320, 240)
    scores = np.tile(np.array([0.8, 0.1], np.float64), (1, n, 1))
    scores[..., 1] += 0.1
    scores[0, :10, 1] += off  # ten rows off by ``off``
    boxes = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)[None].astype(np.float32)
    probe = output_problem({"scores": scores, "boxes": boxes}, _meta(precision))
    inv = softmax_problem(scores, precision)
    if factor > 1:
        assert probe is not None and probe[0] == MISMATCH and "softmaxed" in probe[1] and inv is not None
    else:
        assert probe is None and inv is None


# ----------------------------------------------------------------------------- the calibration choice


def test_the_choice_keeps_the_best_and_prefers_unclipped_ranges_within_the_margin():
    from zoo.exporters.base import CHOICE_MARGIN, choose

    assert CHOICE_MARGIN == 0.05
    assert choose({"MinMax": 0.0110, "Percentile": 0.0100}) == "Percentile"  # no preference given
    assert choose({"MinMax": 0.0104, "Percentile": 0.0100}, ["MinMax"]) == "MinMax"  # within 5%
    assert choose({"MinMax": 0.0106, "Percentile": 0.0100}, ["MinMax"]) == "Percentile"  # beyond it
    # a fixed tie-break: equal errors go by name, whatever the dict's order
    assert choose({"b": 0.01, "a": 0.01}) == choose({"a": 0.01, "b": 0.01}) == "a"
    assert choose({"b": 0.01, "a": 0.01, "c": 0.0102}, ["c", "b"]) == "b"
    with pytest.raises(ValueError):
        choose({})
