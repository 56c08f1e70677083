"""The parity tiers are pinned: docs/parity.md's table is the code's RULES, and `compare` applies each number of
each tier exactly at its edge (a hair inside passes, a hair outside fails).

Every expectation here is read from RULES, so a change of the tiers made on purpose, in the code and the
docs together (`scripts/docs_tiers.py --write`), keeps these tests green; a change of one without
the other, or a rule that `compare` stops applying, turns them red.
"""
from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from zoo.validation.parity import (
    DETECT,
    README_BEGIN,
    README_END,
    RULES,
    TIERS,
    ParityInput,
    compare,
    readme_tiers_block,
    tiers_markdown,
)

LABELS = ("BACKGROUND", "face")
GATED = [p for p, t in TIERS.items() if t["atol"] is not None]


def test_docs_table_is_generated_from_rules():
    block = readme_tiers_block((ROOT / "docs" / "parity.md").read_text())
    assert block is not None, f"docs/parity.md lost its {README_BEGIN!r} ... {README_END!r} block"
    assert block == tiers_markdown(RULES), (
        "docs/parity.md's tolerance table differs from RULES in validation/parity.py: "
        "run `.venv/bin/python scripts/docs_tiers.py --write` (or fix the code)\n" + tiers_markdown(RULES))


def test_every_number_of_every_tier_is_in_the_table():
    table = tiers_markdown(RULES)
    for name, tier in TIERS.items():
        row = next(l for l in table.splitlines() if l.startswith(f"| {name}"))
        for key, v in tier.items():
            if isinstance(v, dict):
                for out, a in v.items():
                    widened = copy.deepcopy(RULES)
                    widened["tiers"][name][key][out] = a * 50
                    assert tiers_markdown(widened) != table, (name, key, out)
            elif v is not None:
                widened = copy.deepcopy(RULES)
                widened["tiers"][name][key] = v * 0.5 if v else 0.001
                assert tiers_markdown(widened) != table, (name, key)
        assert row.count("|") >= 8
    # a key the table has no column for is still shown (a new rule cannot hide from the docs)
    extra = copy.deepcopy(RULES)
    extra["tiers"]["fp32"]["new_rule"] = 0.123
    assert "new_rule 0.123" in tiers_markdown(extra)
    for k in ("score_threshold", "iou_threshold"):
        moved = copy.deepcopy(RULES)
        moved["detect"][k] = DETECT[k] + 0.05
        assert tiers_markdown(moved) != table, k


def test_the_docs_script_checks_and_writes(tmp_path):
    cp = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_tiers.py")], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr


# --------------------------------------------------------------------------- compare() at each edge

N, P = 4, 6


def _outputs():
    """N images, P priors; prior 0 of each image is one face."""
    fg = np.full((N, P), 0.01, np.float64)
    fg[:, 0] = 0.9
    scores = np.stack([1 - fg, fg], -1)
    boxes = np.tile(np.array([0.30, 0.30, 0.50, 0.60]), (N, P, 1))
    for j in range(1, P):
        boxes[:, j] = [0.05 * j, 0.7, 0.05 * j + 0.04, 0.8]
    locations = np.tile(np.array([0.5, -0.25, 1.5, -2.0]), (N, P, 1))
    return {"scores": scores.astype(np.float32), "boxes": boxes.astype(np.float32),
            "locations": locations.astype(np.float32)}


def _data(n=N):
    return ParityInput(np.zeros((n, 3, 4, 4), np.float32), [f"i{i}.jpg" for i in range(n)], [(400, 300)] * n)


def _bound(tier, name, ref):
    return tier["atol"][name] + tier["rtol"] * abs(ref)


@pytest.mark.parametrize("precision", GATED)
@pytest.mark.parametrize("name", ["boxes", "locations", "scores"])
@pytest.mark.parametrize("factor, passes", [(0.99, True), (1.01, False)])
def test_each_output_tolerance_at_its_edge(precision, name, factor, passes):
    tier = TIERS[precision]
    ref = _outputs()
    got = {k: v.copy() for k, v in ref.items()}
    i, j = 2, 3  # a prior that is no face: detections stay the same
    if name == "scores":  # both classes move, so the row still sums to 1
        d = factor * _bound(tier, name, ref["scores"][i, j, 1])
        got["scores"][i, j] = [ref["scores"][i, j, 0] + d, ref["scores"][i, j, 1] - d]
    else:
        k = 2
        got[name][i, j, k] = ref[name][i, j, k] + factor * _bound(tier, name, ref[name][i, j, k])
    r = compare(ref, got, _data(), LABELS, P, precision)
    assert r["outputs"][name]["passed"] is passes
    assert r["passed"] is passes, r["failures"]
    if not passes:
        assert any(f.startswith(f"output {name!r} diverges") and "i2.jpg" in f for f in r["failures"]), r["failures"]
    assert r["outputs"][name]["worst_image"] == i


@pytest.mark.parametrize("precision", list(TIERS))
@pytest.mark.parametrize("factor, passes", [(0.9, True), (1.1, False)])
def test_score_rows_sum_to_one_within_the_tier(precision, factor, passes):
    tier = TIERS[precision]
    ref = _outputs()
    got = {k: v.copy() for k, v in ref.items()}
    got["scores"][1, 4, 0] += factor * tier["sum_tol"]
    r = compare(ref, got, _data(), LABELS, P, precision)
    sums = [f for f in r["invariants"]["failures"] if "sum to 1" in f]
    assert (not sums) is passes, r["invariants"]


def _faces(n_faces: int, moved: int = 0, dx: float = 0.0, lost: int = 0, extra: int = 0, got_score: float | None = None):
    """n_faces images with one face each; in ``moved`` of them the artifact's box is shifted by dx, in
    ``lost`` the face is gone, ``extra`` of them get a confident box where the reference has none."""
    fg = np.full((n_faces, P), 0.01)
    fg[:, 0] = 0.9
    boxes = np.tile(np.array([0.30, 0.30, 0.50, 0.60]), (n_faces, P, 1))
    for j in range(1, P):
        boxes[:, j] = [0.05 * j, 0.7, 0.05 * j + 0.04, 0.8]
    ref = {"scores": np.stack([1 - fg, fg], -1).astype(np.float32), "boxes": boxes.astype(np.float32)}
    gfg, gboxes = fg.copy(), boxes.copy()
    gboxes[:moved, 0, [0, 2]] += dx
    gfg[moved:moved + lost, 0] = 0.01
    gfg[n_faces - extra:, 5] = 0.95
    if got_score is not None:
        gfg[:, 0] = got_score
    got = {"scores": np.stack([1 - gfg, gfg], -1).astype(np.float32), "boxes": gboxes.astype(np.float32)}
    return ref, got


@pytest.mark.parametrize("precision", list(TIERS))
@pytest.mark.parametrize("side", ["inside", "outside"])
def test_min_iou_at_its_edge(precision, side):
    """Same-size boxes shifted by d along x have IoU (w - d) / (w + d): d is chosen a hair each side."""
    tier = TIERS[precision]
    w_px = 0.2 * 400
    target = tier["min_iou"] + (1e-3 if side == "inside" else -1e-3)
    d = w_px * (1 - target) / (1 + target) / 400
    ref, got = _faces(N, moved=1, dx=d)
    r = compare(ref, got, _data(), LABELS, P, precision)
    det = r["detections"]
    assert det["matched"] == (N if side == "inside" else N - 1), det
    if side == "inside":
        assert det["min_iou"] == pytest.approx(target, abs=2e-4)


@pytest.mark.parametrize("precision", list(TIERS))
def test_recall_and_extra_at_their_edges(precision):
    tier = TIERS[precision]
    n = 400
    allowed_missed = math.floor(round((1 - tier["min_recall"]) * n, 6))
    allowed_extra = math.floor(round(tier["max_extra"] * n, 6))
    for lost, extra, passes in ((allowed_missed, 0, True), (allowed_missed + 1, 0, False),
                                (0, allowed_extra, True), (0, allowed_extra + 1, False)):
        ref, got = _faces(n, lost=lost, extra=extra)
        det = compare(ref, got, _data(n), LABELS, P, precision)["detections"]
        assert (det["missed"], det["extra"]) == (lost, extra)
        assert det["passed"] is passes, (precision, lost, extra, det["recall"], det["extra_rate"])


@pytest.mark.parametrize("precision", list(TIERS))
@pytest.mark.parametrize("factor, kept", [(0.9, True), (1.1, False)])
def test_score_margin_at_its_edge(precision, factor, kept):
    tier = TIERS[precision]
    score = DETECT["score_threshold"] - factor * tier["score_margin"]
    ref, got = _faces(N, got_score=score)
    det = compare(ref, got, _data(), LABELS, P, precision)["detections"]
    assert det["matched"] == (N if kept else 0), det
    assert det["borderline_missed"] == (N if kept else 0)
    assert det["strict"]["matched"] == 0 and det["strict"]["missed"] == N


@pytest.mark.parametrize("precision", [p for p, t in TIERS.items() if t.get("strict_min_recall") is not None])
def test_strict_kept_and_extra_at_their_edges(precision):
    """The strict rule (issue 29: no margin on either side) at its edges, the margin rule satisfied
    throughout: faces the artifact scores a hair under the threshold (kept only by the margin) and
    detections the reference scores a hair under it (extra only without the margin)."""
    tier = TIERS[precision]
    n = 400
    near = DETECT["score_threshold"] - tier["score_margin"] / 2
    allowed_missed = math.floor(round((1 - tier["strict_min_recall"]) * n, 6))
    allowed_extra = math.floor(round(tier["strict_max_extra"] * n, 6))
    for under, over, passes in ((allowed_missed, 0, True), (allowed_missed + 1, 0, False),
                                (0, allowed_extra, True), (0, allowed_extra + 1, False)):
        ref, got = _faces(n, extra=over)
        got["scores"][:under, 0, 1] = near
        got["scores"][:under, 0, 0] = 1 - near
        ref["scores"][n - over:, 5, 1] = near
        ref["scores"][n - over:, 5, 0] = 1 - near
        det = compare(ref, got, _data(n), LABELS, P, precision)["detections"]
        assert (det["missed"], det["extra"]) == (0, 0), det  # the margin rule alone passes
        assert (det["borderline_missed"], det["borderline_extra"]) == (under, over), det
        assert det["passed"] is passes, (precision, under, over, det["strict"])
