"""Issue 40: parts of validation/parity.py the mutation run found unchecked: the faces `zoo report` draws
(kept, missed, extra, borderline, box by box), and the generated tolerance table (its "other rules" column,
output names, candidate count) with the block it is read back from."""
from __future__ import annotations

import copy

from zoo.core.model.processing import Detection
from zoo.validation import parity
from zoo.validation.parity import README_BEGIN, README_END, RULES, TIERS, faces, readme_tiers_block, tiers_markdown


def _d(x: float, score: float, label: str = "face") -> Detection:
    return Detection((x, 10.0, x + 40.0, 60.0), score, label, 1)


def test_faces_sorts_each_reference_face_and_artifact_box():
    ref = [_d(0, 0.95), _d(100, 0.9), _d(200, 0.8), _d(300, 0.5)]  # the last is under the threshold: not a face
    got = [_d(0.5, 0.93),  # kept
           _d(200.5, 0.69),  # kept only by the margin: borderline
           _d(400, 0.9),  # extra: the reference has nothing there
           _d(300.5, 0.75)]  # the reference's box there scores 0.5: seen, not extra
    f = faces(ref, got, TIERS["int8"])
    assert f["kept"] == [(ref[0], got[0]), (ref[2], got[1])]
    assert f["missed"] == [ref[1]]
    assert f["extra"] == [got[2]]
    assert f["borderline"] == [got[1]]
    assert set(f) == {"kept", "missed", "extra", "borderline"}


def test_faces_uses_the_tiers_iou_and_the_detection_threshold():
    ref, got = [_d(0, 0.9)], [_d(6, 0.9)]  # IoU 34/46 = 0.74: kept at int8 (>= 0.5), lost at fp32 (>= 0.99)
    assert faces(ref, got, TIERS["int8"])["kept"] == [(ref[0], got[0])]
    f = faces(ref, got, TIERS["fp32"])
    assert f["kept"] == [] and f["missed"] == ref and f["extra"] == got
    at = [_d(0, parity.DETECT["score_threshold"])]  # exactly at the threshold: a face on both sides, not borderline
    assert faces(at, at, TIERS["int8"]) == {"kept": [(at[0], at[0])], "missed": [], "extra": [], "borderline": []}


def _rules(**detect) -> dict:
    r = copy.deepcopy(RULES)
    r["detect"].update(detect)
    return r


def test_the_table_lists_rules_it_has_no_column_for():
    r = _rules()
    r["tiers"]["int8"]["zeta"] = 2
    r["tiers"]["int8"]["alpha"] = 1
    table = tiers_markdown(r).splitlines()
    assert table[0].endswith("| strict extra | other rules |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:5]}
    assert rows["int8 (every flavour)"].endswith("| alpha 1, zeta 2 |")
    assert rows["fp32"].endswith("| - |") and rows["fp16"].endswith("| - |")
    assert "other rules" not in tiers_markdown(RULES).splitlines()[0]


def test_the_table_names_outputs_and_candidates():
    r = _rules(candidate_size=200)
    r["tiers"]["fp16"]["atol"] = {"scores": 0.02, "heatmap": 0.5, "locations": 0.25}
    text = tiers_markdown(r)
    assert "| scores 0.02, heatmap 0.5, raw offsets 0.25; rtol 0.01 |" in text  # an unnamed output keeps its key
    assert "NMS at IoU 0.3, 200 kept before NMS;" in text
    assert "NMS at IoU 0.3, 99999 kept before NMS;" in tiers_markdown(_rules(candidate_size=99_999))
    assert "NMS at IoU 0.3, every candidate kept before NMS;" in tiers_markdown(_rules(candidate_size=100_000))


def test_small_numbers_and_percentages_as_the_docs_write_them():
    assert parity._g(0) == "0" and parity._g(5e-4) == "5e-4" and parity._g(0.02) == "0.02" and parity._g(-2e-5) == "-2e-5"
    assert parity._pct(0.995) == "99.5%" and parity._pct(0.00001234567) == "0.001235%"


def test_the_generated_block_is_read_back_between_its_markers():
    assert readme_tiers_block("text") is None
    assert readme_tiers_block(f"a {README_BEGIN} b") is None  # an opening marker alone
    assert readme_tiers_block(f"a {README_END} b") is None
    doc = f"intro\n{README_BEGIN}\nX | table | X\n\n{README_END}\nmiddle\n{README_BEGIN}\nsecond\n{README_END}\nend"
    assert readme_tiers_block(doc) == "X | table | X"  # the first block, newlines trimmed, nothing else
    assert readme_tiers_block(f"{README_BEGIN}\n  indented  \n{README_END}") == "  indented  "


# ----------------------------------------------------------------------------- tensors, rows and lines

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from zoo.validation.parity import (ParityInput, compare, compare_rows, detection_failure, detection_verdict,  # noqa: E402
                                   detections_from_rows, invariants, nms_rows, strict_counts, tensor_stats)

LABELS = ("BACKGROUND", "face")


def test_tensor_stats_values():
    ref = np.array([[1.0, -2.0], [0.0, 4.0]], np.float32)
    got = np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)
    assert tensor_stats(ref, got) == {"max_abs": 1.0, "max_rel": 0.25 / 1e-6, "mean_abs": 0.4375, "worst_image": 1}


def test_detections_from_rows_scale_and_labels():
    rows = np.array([[0.1, 0.2, 0.5, 0.6, 0.9, 1], [0.0, 0.0, 1.0, 1.0, 0.8, 7]], np.float32)
    a, b = detections_from_rows(rows, 200, 100, LABELS)
    assert a.box == pytest.approx((20.0, 20.0, 100.0, 60.0)) and a.score == pytest.approx(0.9)
    assert (a.label, a.class_id) == ("face", 1) and (b.label, b.class_id) == ("7", 7)  # a class past the labels: its id
    assert detections_from_rows([[0.5, 0.5, 0.5, 0.5, 0.75, 2]], 10, 10, ("bg", "a", "b"))[0].label == "b"
    assert detections_from_rows([[0.5, 0.5, 0.5, 0.5, 0.75, 2]], 10, 10, LABELS)[0].label == "2"  # just past the labels


def test_strict_counts_and_the_failure_line():
    c = {"reference": 200, "matched": 198, "extra": 1, "borderline_missed": 4, "borderline_extra": 3}
    assert strict_counts(c) == {"matched": 194, "missed": 6, "extra": 4, "recall": 0.97, "extra_rate": 0.02}
    assert strict_counts({"reference": 10, "matched": 10, "extra": 0}) == \
        {"matched": 10, "missed": 0, "extra": 0, "recall": 1.0, "extra_rate": 0.0}
    assert strict_counts({"reference": 0, "matched": 0, "extra": 2})["recall"] == 1.0  # no faces: none lost
    from zoo.validation.parity import TIERS

    assert not detection_verdict(c, TIERS["int8"])
    assert detection_failure(c, TIERS["int8"], "on X, ") == (
        "detections: on X, 198/200 matched at IoU >= 0.5 (99.00%, >= 99% required), 1 extra (0.50%, <= 1%); "
        "strict (no margin) 194/200 kept (97.00%, >= 97% required), 4 extra (2.00%, <= 1%)")
    c = {"reference": 4, "matched": 3, "extra": 0}
    assert not detection_verdict(c, TIERS["fp32"]) and c["recall"] == 0.75
    assert detection_failure(c, TIERS["fp32"]) == \
        "detections: 3/4 matched at IoU >= 0.99 (75.00%, >= 100% required), 0 extra (0.00%, <= 0%)"
    c = {"reference": 0, "matched": 0, "extra": 0}
    assert detection_verdict(c, TIERS["fp16"]) and c["recall"] == 1.0


def _out(n=1, p=6):
    fg = np.full((n, p), 0.01, np.float32)
    fg[:, 0] = 0.95
    scores = np.stack([1 - fg, fg], -1)
    boxes = np.tile(np.array([0.1, 0.1, 0.4, 0.5], np.float32), (n, p, 1))
    boxes[:, 1:] = np.array([0.6, 0.6, 0.62, 0.63], np.float32)
    return {"scores": scores, "boxes": boxes}


def test_invariants_name_each_broken_rule():
    o = _out()
    assert invariants(o, 6, "fp32") == []
    bad = {"scores": o["scores"], "boxes": o["boxes"].copy()}
    bad["boxes"][0, 0] = [0.5, 0.1, 0.4, 0.5]  # x1 > x2
    assert invariants(bad, 6, "fp32") == ["some boxes have x1 > x2 or y1 > y2"]
    bad["boxes"][0, 0] = [0.1, 0.6, 0.4, 0.5]  # y1 > y2 only
    assert invariants(bad, 6, "fp32") == ["some boxes have x1 > x2 or y1 > y2"]
    edge = {"scores": o["scores"], "boxes": o["boxes"].copy()}
    edge["boxes"][0, 0] = [0.4, 0.5, 0.4, 0.5]  # an empty box is in order
    assert invariants(edge, 6, "fp32") == []
    assert invariants(o, 7, "fp32") == ["prior count 6 != model's 7"]
    assert invariants({"scores": o["scores"], "boxes": o["boxes"][:, :5]}, 6, "fp32") == ["prior count 6 != model's 6"]
    nan = {"scores": o["scores"], "boxes": o["boxes"].copy()}
    nan["boxes"][0, 1, 0] = np.nan
    assert invariants(nan, 6, "fp32")[0] == "boxes has NaN or Inf"


def test_compare_records_each_output_and_names_a_divergence():
    data = ParityInput(np.zeros((2, 3, 4, 4), np.float32), ["a.jpg", "b.jpg"], [(320, 240)] * 2)
    ref = _out(2)
    r = compare(ref, {k: v.copy() for k, v in ref.items()}, data, LABELS, 6, "fp32")
    assert r["passed"] and r["images"] == 2 and r["precision"] == "fp32" and set(r["outputs"]) == {"scores", "boxes"}
    assert r["outputs"]["boxes"] == {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0, "worst_image": 0, "passed": True}
    assert r["invariants"] == {"passed": True, "failures": []}
    assert r["detections"]["max_score_change"] == 0.0 and r["detections"]["borderline"] == 0
    got = {k: v.copy() for k, v in ref.items()}
    got["boxes"][1, 3, 0] += 0.001  # 1e-3 on a background box of the second image: over fp32's 1e-4
    r = compare(ref, got, data, LABELS, 6, "fp32")
    assert not r["passed"] and r["outputs"]["boxes"]["worst_image"] == 1
    assert r["failures"] == [f"output 'boxes' diverges: max abs {r['outputs']['boxes']['max_abs']:.3g} "
                             "(tolerance 0.0001) on image b.jpg"]
    got = {k: v.copy() for k, v in ref.items()}
    got["boxes"][0, 0] += np.float32(5e-5)  # within atol + rtol x |ref|
    assert compare(ref, got, data, LABELS, 6, "fp32")["outputs"]["boxes"]["passed"]
    got["scores"][0, 0] = [0.2, 0.8]  # the face's score moves 0.15: a detection change, fp16 reports it
    r = compare(ref, got, data, LABELS, 6, "fp16")
    assert r["detections"]["max_score_change"] == pytest.approx(0.15, abs=1e-6)


def test_nms_rows_at_their_thresholds():
    s = np.array([[0.3, 0.7], [0.2, 0.8], [0.1, 0.9], [0.05, 0.95]], np.float32)
    b = np.array([[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5]], np.float32)
    rows = nms_rows(s, b, 0.7, 0.3)
    assert rows.dtype == np.float64 and rows.shape == (2, 6)  # 0.7 is not above 0.7; each pair of twins keeps one
    assert rows[:, 4].tolist() == pytest.approx([0.95, 0.9]) and rows[:, 5].tolist() == [1.0, 1.0]
    assert nms_rows(s, b, 0.99, 0.3).shape == (0, 6)
    half = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.25, 0.5, 0.75]], np.float32)  # IoU 1/3
    two = np.array([[0.0, 1.0], [0.0, 0.9]], np.float32)
    assert len(nms_rows(two, half, 0.5, 1 / 3 + 1e-6)) == 2 and len(nms_rows(two, half, 0.5, 1 / 3 - 1e-6)) == 1
    assert len(nms_rows(two, half, 0.5, 1 / 3)) == 2  # an IoU equal to the threshold does not suppress (ONNX: >)
    at = np.array([[0.3, 0.7]], np.float32)
    assert nms_rows(at, half[:1], 0.7, 0.3).shape == (0, 6)  # a score equal to the threshold is not above it
    assert len(nms_rows(two, half, 0.5, 0.3, max_per_class=1)) == 1
    apart = np.array([[0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], np.float32)
    grid = np.array([[x / 10, y / 10, x / 10 + 0.05, y / 10 + 0.05] for x in range(8) for y in range(8)], np.float32)
    tie = np.zeros((64, 2), np.float32)
    tie[:, 1] = np.random.default_rng(0).choice(np.array([0.8, 0.9], np.float32), 64)  # two scores, many ties
    rows = nms_rows(tie, grid, 0.5, 0.3)
    order = [i for s in (0.9, 0.8) for i in range(64) if tie[i, 1] == np.float32(s)]  # ties keep their order
    np.testing.assert_array_equal(rows[:, :4], grid[order].astype(np.float64))
    three = np.array([[0.8, 0.1, 0.9]], np.float32)  # background (never a detection), class 1 under, class 2 above
    assert nms_rows(three, apart[:1], 0.5, 0.3)[:, 5].tolist() == [2.0]


def test_compare_rows_counts_and_lines():
    data = ParityInput(np.zeros((1, 3, 4, 4), np.float32), ["a.jpg"], [(100, 100)])
    from zoo.validation.parity import TIERS

    ref = [np.array([[0.1, 0.1, 0.4, 0.4, 0.9, 1], [0.6, 0.6, 0.9, 0.9, 0.95, 1]])]
    same = compare_rows(ref, [ref[0].copy()], data, LABELS, TIERS["fp32"])
    assert same == {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0, "worst_image": 0,
                    "rows": {"reference": 2, "artifact": 2, "paired": 2, "unpaired": 0, "borderline": 0}, "passed": True}
    got = [ref[0][1:].copy()]  # the 0.9 row lost: unpaired, a failure naming it
    r = compare_rows(ref, got, data, LABELS, TIERS["fp32"])
    assert r["rows"] == {"reference": 2, "artifact": 1, "paired": 1, "unpaired": 1, "borderline": 0}
    assert r["passed"] is False and r["failure"] == \
        "output 'detections' diverges: a detection (score 0.900) on image a.jpg has no counterpart on the other side"
    near = [np.array([[0.1, 0.1, 0.4, 0.4, 0.7 + 1e-4 + 1e-4 * 0.7, 1]])]  # lost, but at the threshold + its tolerance
    r = compare_rows(near, [np.zeros((0, 6))], data, LABELS, TIERS["fp32"])
    assert r["rows"]["borderline"] == 1 and r["rows"]["unpaired"] == 0 and r["passed"]
    moved = [ref[0].copy()]
    moved[0][0, 4] += 0.01
    r = compare_rows(ref, moved, data, LABELS, TIERS["fp32"])
    assert r["max_abs"] == pytest.approx(0.01) and r["max_rel"] == pytest.approx(0.01 / 0.9)
    assert r["failure"] == "output 'detections' diverges: max abs 0.01 (tolerance boxes 0.0001, scores 0.0001) on image a.jpg"
    r = compare_rows(ref, got, data, LABELS, TIERS["int8"])  # not gated: reported only
    assert "passed" not in r and r["rows"]["unpaired"] == 1
    two = ParityInput(np.zeros((2, 3, 4, 4), np.float32), ["a.jpg", "b.jpg"], [(100, 100)] * 2)
    r = compare_rows(ref * 2, [ref[0].copy(), ref[0][1:].copy()], two, LABELS, TIERS["fp32"])
    assert r["rows"] == {"reference": 4, "artifact": 3, "paired": 3, "unpaired": 1, "borderline": 0}


def test_match_counts_each_kind_of_face():
    from zoo.validation.parity import match

    ref = [_d(0, 0.95), _d(100, 0.9), _d(200, 0.7), _d(300, 0.68), _d(400, 0.9)]
    got = [_d(0, 0.95), _d(100.37, 0.69),  # kept a hair under the threshold: borderline missed
           _d(200, 0.7),  # exactly at the threshold on both sides: a face, not borderline
           _d(300, 0.8),  # the reference has it only under the threshold: borderline extra
           _d(500, 0.9), _d(600, 0.9)]  # two extra; the reference's fifth face is missed
    c = match(ref, got, 0.5, 0.7, 0.05)
    by = c.pop("by_size")
    assert c == {"reference": 4, "matched": 3, "missed": 1, "extra": 2, "borderline": 2, "borderline_missed": 1,
                 "borderline_extra": 1, "min_iou": 0.98167,  # 39.63/40.37 to 6 digits
                 "max_score_change": pytest.approx(0.21)}
    assert by["16-64"] == {"reference": 4, "matched": 3, "missed": 1, "extra": 2}
    none = match([], got[:1], 0.5, 0.7, 0.05)
    assert none["min_iou"] is None and none["matched"] == 0 and none["max_score_change"] == 0.0


def test_pairs_are_made_within_a_label_and_at_the_iou_edge():
    from zoo.validation.parity import _pairs

    a = [_d(0, 0.9, "face"), _d(100, 0.9, "cat")]
    b = [_d(0, 0.9, "cat"), _d(100, 0.9, "cat")]
    assert _pairs(a, b, 0.5) == {1: 1}  # the face has no face to pair with; the cat its cat
    half = [Detection((0.0, 0.0, 2.0, 1.0), 0.9, "face", 1)]
    third = [Detection((1.0, 0.0, 3.0, 1.0), 0.9, "face", 1)]  # IoU 1/3 (iou_matrix's epsilon aside)
    from zoo.core.model.processing import iou_matrix

    iou = float(iou_matrix(np.array([half[0].box]), np.array([third[0].box]))[0, 0])
    assert _pairs(half, third, iou) == {0: 0} and _pairs(half, third, iou + 1e-9) == {}  # >= min_iou pairs
    many = [_d(x, 0.9) for x in (0, 100, 200)]
    assert _pairs(many, list(reversed(many)), 0.5) == {0: 2, 1: 1, 2: 0}  # every pair, not only the first


def test_compare_of_an_nms_graph_and_of_broken_invariants():
    data = ParityInput(np.zeros((2, 3, 4, 4), np.float32), ["a.jpg", "b.jpg"], [(320, 240)] * 2)
    ref = _out(2)
    rows = [nms_rows(ref["scores"][i], ref["boxes"][i], 0.7, 0.3) for i in range(2)]
    r = compare(ref, {"detections": rows}, data, LABELS, 6, "fp32")
    assert r["passed"] and r["invariants"] == {"passed": True, "failures": [], "note": "end-to-end NMS graph: detections only"}
    got = {k: v.copy() for k, v in ref.items()}
    got["boxes"][1, 0] = [0.4, 0.1, 0.1, 0.5]  # the face's box turned inside out on the second image
    r = compare(ref, got, data, LABELS, 6, "int8")
    assert r["invariants"] == {"passed": False, "failures": ["some boxes have x1 > x2 or y1 > y2"]}
    assert r["failures"][0] == "invariant: some boxes have x1 > x2 or y1 > y2"
    assert r["failures"][-1].endswith("(worst image b.jpg: 1 missed, 1 extra, 0 borderline)"), r["failures"]
    assert r["detections"]["borderline"] == 0 and r["detections"]["max_score_change"] == 0.0


def test_compare_rows_edges():
    from zoo.validation.parity import TIERS

    one = ParityInput(np.zeros((1, 3, 4, 4), np.float32), ["a.jpg"], [(100, 100)])
    empty = compare_rows([np.zeros((0, 6))], [np.zeros((0, 6))], one, LABELS, TIERS["fp32"])
    assert empty == {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0, "worst_image": 0,
                     "rows": {"reference": 0, "artifact": 0, "paired": 0, "unpaired": 0, "borderline": 0}, "passed": True}
    ref = [np.array([[0.1, 0.1, 0.4, 0.4, 0.9, 1], [0.6, 0.6, 0.9, 0.9, 0.95, 1]])]
    moved = [ref[0].copy()]
    moved[0][0, 4] += 0.01  # one value of the ten paired moves
    assert compare_rows(ref, moved, one, LABELS, TIERS["int8"])["mean_abs"] == pytest.approx(0.001)
    two = ParityInput(np.zeros((2, 3, 4, 4), np.float32), ["a.jpg", "b.jpg"], [(100, 100)] * 2)
    r = compare_rows(ref * 2, moved * 2, two, LABELS, TIERS["int8"])
    assert r["worst_image"] == 0  # a tie: the first image with the largest difference
    r = compare_rows(ref * 2, [ref[0], moved[0]], two, LABELS, TIERS["int8"])
    assert r["worst_image"] == 1
    # a paired value exactly at its bound (atol + rtol x 0) passes; a score just past the threshold plus the
    # gated tier's score tolerance (1e-4 + 1e-4 x 0.7) is unpaired, not borderline (not the ungated margin, 1e-3)
    at = [np.array([[0.0, 0.0, 0.4, 0.4, 0.9, 1]])]
    edge = [at[0].copy()]
    edge[0][0, 0] = 1e-4
    assert compare_rows(at, edge, one, LABELS, TIERS["fp32"])["passed"]
    past = [np.array([[0.1, 0.1, 0.4, 0.4, 0.7 + 2e-4, 1]])]
    r = compare_rows(past, [np.zeros((0, 6))], one, LABELS, TIERS["fp32"])
    assert r["rows"]["unpaired"] == 1 and r["rows"]["borderline"] == 0 and not r["passed"]
    r = compare_rows(past, [np.zeros((0, 6))], one, LABELS, TIERS["int8"])
    assert r["rows"]["borderline"] == 1  # the ungated tier's margin, 0.05
    lost = [np.array([[0.1, 0.1, 0.2, 0.2, 0.7, 1], [0.3, 0.3, 0.4, 0.4, 0.7, 1],
                      [0.5, 0.5, 0.6, 0.6, 0.9, 1], [0.7, 0.7, 0.8, 0.8, 0.9, 1]])]
    r = compare_rows(lost, [np.zeros((0, 6))], one, LABELS, TIERS["fp32"])
    assert r["rows"] == {"reference": 4, "artifact": 0, "paired": 0, "unpaired": 2, "borderline": 2}


def test_a_box_inverted_within_the_tolerance_is_in_order():
    o = _out()
    for x in (0, 1):  # x1/x2, then y1/y2
        edge = {"scores": o["scores"], "boxes": o["boxes"].copy()}
        lo = edge["boxes"][0, 0, x]
        edge["boxes"][0, 0, x + 2] = lo - 1e-6  # float32 arithmetic, as the check's own
        assert invariants(edge, 6, "fp32") == []
        edge["boxes"][0, 0, x + 2] = np.nextafter(lo - 1e-6, np.float32(0))
        assert invariants(edge, 6, "fp32") == ["some boxes have x1 > x2 or y1 > y2"]


def test_match_counts_every_borderline_face_and_an_extra_at_the_threshold():
    from zoo.validation.parity import match

    ref = [_d(0, 0.9), _d(100, 0.9), _d(200, 0.68), _d(300, 0.68)]
    got = [_d(0, 0.69), _d(100, 0.69),  # two kept a hair under the threshold: borderline missed
           _d(200, 0.8), _d(300, 0.8),  # two the reference has only under it: borderline extra
           _d(500, 0.7)]  # exactly at the threshold, nothing under it in the reference: extra
    c = match(ref, got, 0.5, 0.7, 0.05)
    assert (c["borderline_missed"], c["borderline_extra"], c["borderline"], c["extra"]) == (2, 2, 4, 1)


def test_pairs_skip_a_taken_box_and_go_on():
    from zoo.validation.parity import _pairs

    a = [Detection((0.0, 0.0, 10.0, 10.0), 0.9, "face", 1), Detection((0.0, 1.0, 10.0, 10.0), 0.9, "face", 1)]
    b = [Detection((0.0, 0.0, 10.0, 10.0), 0.9, "face", 1), Detection((0.0, 0.0, 10.0, 9.0), 0.9, "face", 1)]
    # IoU a0-b0 1.0, a0-b1 0.9 and a1-b0 0.9 (each a box taken), then a1-b1 0.8: still paired
    assert _pairs(a, b, 0.5) == {0: 0, 1: 1}


def test_the_rates_of_a_photo_without_reference_faces():
    c = {"reference": 0, "matched": 0, "extra": 1, "borderline_missed": 0, "borderline_extra": 0}
    assert not detection_verdict(c, TIERS["int8"])
    assert c["extra_rate"] == 1.0 and c["strict"]["extra_rate"] == 1.0 and c["recall"] == 1.0  # one extra per (at least one) face


def test_a_tensor_exactly_at_its_tolerance_passes():
    data = ParityInput(np.zeros((1, 3, 4, 4), np.float32), ["a.jpg"], [(320, 240)])
    ref = _out(1)
    ref["boxes"][0, 0, 0] = 0.0
    got = {k: v.copy() for k, v in ref.items()}
    got["boxes"][0, 0, 0] = np.float32(1e-4)  # |diff| == atol + rtol x 0, in the float32 the tensors hold
    assert np.abs(got["boxes"] - ref["boxes"]).max() == np.float32(1e-4)
    r = compare(ref, got, data, LABELS, 6, "fp32")
    assert r["outputs"]["boxes"]["passed"], r["failures"]



def test_the_failure_names_the_image_with_most_faces_in_doubt():
    data = ParityInput(np.zeros((2, 3, 4, 4), np.float32), ["a.jpg", "b.jpg"], [(320, 240)] * 2)
    ref = _out(2)
    ref["boxes"][1, 1] = [0.3, 0.3, 0.35, 0.36]
    ref["boxes"][1, 2] = [0.7, 0.1, 0.75, 0.16]
    ref["scores"][1, 1:3] = [[0.32, 0.68], [0.32, 0.68]]  # two faces the reference has just under 0.7
    got = {k: v.copy() for k, v in ref.items()}
    got["scores"][:, 0] = [0.5, 0.5]  # each image's face lost: one missed in each
    got["scores"][1, 1:3] = [[0.2, 0.8], [0.2, 0.8]]  # b.jpg: and two borderline extra
    r = compare(ref, got, data, LABELS, 6, "int8", min_evidence=0)
    assert not r["passed"]
    assert r["failures"][-1].endswith("(worst image b.jpg: 1 missed, 0 extra, 2 borderline)"), r["failures"]
