"""The fidelity table of `zoo report` from manifest parity results: rendered from real counts, a dash where a
manifest predates them, and never a crash on whatever a (hostile or damaged) manifest holds there."""
from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.checkpoints.loader import published
from zoo.validation.report.collect import _parity_summary
from zoo.validation.report.csvtext import render_csv
from zoo.validation.report.markdown import render_markdown

PARITY = {
    "passed": False, "precision": "int8", "images": 16,
    "outputs": {"scores": {"max_abs": 0.18}, "boxes": {"max_abs": 0.03}},
    "detections": {"reference": 285, "matched": 280, "missed": 5, "extra": 3, "borderline": 2, "min_iou": 0.61234,
                   "max_score_change": 0.0912, "strict": {"matched": 278, "missed": 7, "extra": 6},
                   "by_size": {"<16": {"reference": 31, "matched": 27, "missed": 4, "extra": 2},
                               "16-64": {"reference": 210, "matched": 209, "missed": 1, "extra": 1},
                               ">64": {"reference": 44, "matched": 44, "missed": 0, "extra": 0}}},
    "evidence": {"images": 16, "faces": 285, "by_size": {"<16": 31, "16-64": 210, ">64": 44}, "min_faces": 250,
                 "strong": True, "gate": [], "calibration": [], "overlap": []},
    "failures": ["detections: 280/285 matched"],
}


def _report(parities: list[tuple[str, dict]]) -> dict:
    arts = [{"folder": "f", "model": "rfb-320", "target": "onnx", "precision": prec, "head": "raw", "primary": "onnx/x.onnx",
             "files": ["onnx/x.onnx"], "size_bytes": 1000, "size_mib": 0.001, "parity": _parity_summary(p), "bench": [],
             "stale": False} for prec, p in parities]
    return {"schema_version": 1, "folders": ["f"], "models": [], "artifacts": arts, "failed": [], "notes": [],
            "reference": published(), "bench": {"present": False, "files": [], "timestamp": None, "machine": None,
                                                "settings": None, "threads": []}}


def _fidelity_rows(md: str) -> list[list[str]]:
    section = md.split("### Fidelity", 1)[1].split("###", 1)[0]
    rows = [l for l in section.splitlines() if l.startswith("| rfb-320 |")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows]


def test_the_fidelity_row_shows_where_faces_are_lost():
    (row,) = _fidelity_rows(render_markdown(_report([("int8", PARITY)])))
    assert row == ["rfb-320", "onnx", "int8", "raw", "285 faces / 16 img", "280 / 5 / 3", "278 / 7 / 6",
                   "27 / 4 / 2", "209 / 1 / 1", "44 / 0 / 0", "0.6123", "0.091"]


def test_weak_evidence_is_marked_for_fp16_and_int8_only():
    weak = {**PARITY, "evidence": {**PARITY["evidence"], "faces": 3, "images": 3, "strong": False}}
    rows = _fidelity_rows(render_markdown(_report([("int8-io", weak), ("fp32", weak)])))
    assert [r[4] for r in rows] == ["3 faces / 3 img (weak)", "3 faces / 3 img"]


def test_a_manifest_before_the_size_buckets_renders_dashes():
    old = {**PARITY, "detections": {k: v for k, v in PARITY["detections"].items() if k not in ("by_size", "max_score_change", "strict")}}
    old.pop("evidence")
    (row,) = _fidelity_rows(render_markdown(_report([("int8", old)])))
    assert row[4] == "—" and row[6:10] == ["—", "—", "—", "—"] and row[11] == "—"
    assert row[5] == "280 / 5 / 3" and row[10] == "0.6123"
    (line,) = [r for r in csv.DictReader(io.StringIO(render_csv(_report([("int8", old)])))) if r["source"] == "measured"]
    assert line["lt16_matched"] == "" and line["det_missed"] == "5" and line["evidence_faces"] == ""


def test_the_csv_carries_the_same_counts():
    (line,) = [r for r in csv.DictReader(io.StringIO(render_csv(_report([("int8", PARITY)])))) if r["source"] == "measured"]
    assert (line["lt16_matched"], line["lt16_missed"], line["lt16_extra"]) == ("27", "4", "2")
    assert (line["gt64_matched"], line["16to64_missed"], line["evidence_faces"]) == ("44", "1", "285")
    assert line["det_min_iou"] == "0.61234" and line["det_max_score_change"] == "0.0912"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["<16", "16-64", ">64", "matched", "missed", "extra", "reference", "faces", "images", "strong", "max_abs", "x"]),
        inner, max_size=4),
    max_leaves=12,
)
parity_keys = ["images", "detections", "evidence", "outputs", "failures"]


@settings(max_examples=200, deadline=None, database=None)
@given(junk=st.dictionaries(st.sampled_from(parity_keys), json_values, max_size=5),
       nested=st.dictionaries(st.sampled_from(["by_size", "min_iou", "max_score_change", "matched", "faces", "overlap"]),
                              json_values, max_size=4),
       passed=st.booleans())
def test_whatever_a_manifest_holds_in_its_parity_results_renders(junk, nested, passed):
    p = {"passed": passed, **junk}
    for key in ("detections", "evidence"):
        if isinstance(p.get(key), dict):
            p[key] = {**p[key], **nested}
    rep = _report([("int8", p), ("fp32", PARITY)])
    md = render_markdown(rep)
    rows = _fidelity_rows(md)
    assert len(rows) == 2 and all(len(r) == 12 for r in rows)
    assert rows[1][5] == "280 / 5 / 3"
    assert len([r for r in csv.DictReader(io.StringIO(render_csv(rep))) if r["source"] == "measured"]) == 2
