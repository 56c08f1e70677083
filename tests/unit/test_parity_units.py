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
