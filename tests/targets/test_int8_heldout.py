"""int8 that holds on photos it was not calibrated on: every int8 artifact of rfb-320 and slim-320,
on every target, calibrated on one half of the shared photos and gated on the other half.

The matrix (test_targets.py) exports every model with ``--calib`` half A and ``--images`` half B;
this file adds the swap (calibrate on B, gate on A), so each photo is once calibration and once
gate. A half holds ~145 PyTorch faces, hence ``--min-evidence 100`` (the default 250 needs all 16).
"""
from __future__ import annotations

import json

import pytest

from conftest import HALVES, assert_int8_verdict, zoo
from zoo.exporters import get_target, target_names
from zoo.exporters.base import choose
from zoo.exporters.onnx.quantize import UNCLIPPED

INT8_TARGETS = [t for t in target_names() if "int8" in get_target(t).precisions]


@pytest.fixture(scope="session")
def swapped(tmp_path_factory, halves):
    cache = {}

    def get(model_id: str):
        if model_id not in cache:
            out = tmp_path_factory.mktemp(f"heldout-{model_id}")
            avail = [t for t in INT8_TARGETS if get_target(t).available()]
            cp = zoo("export", "--model", model_id, "--to", ",".join(avail), "--precision", "int8", "--out", out,
                     "--calib", halves["B"], "--images", halves["A"], "--min-evidence", "100", "--jobs", "2")
            manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else None
            cache[model_id] = (avail, manifest, cp)
        return cache[model_id]

    return get


@pytest.mark.parametrize("model_id", ["rfb-320", "slim-320"])
def test_int8_keeps_the_faces_of_photos_it_was_not_calibrated_on(model_id, swapped):
    avail, manifest, cp = swapped(model_id)
    missing = sorted(set(INT8_TARGETS) - set(avail))
    if missing:
        pytest.skip(f"runtimes not installed for {', '.join(missing)}")
    assert manifest is not None and not manifest["failed"], cp.stdout[-3000:] + cp.stderr[-3000:]
    arts = [a for a in manifest["artifacts"] if a["precision"].startswith("int8")]
    assert cp.returncode == (0 if all(a["parity"]["passed"] for a in arts) else 2), cp.stderr[-3000:]
    expected = sorted(v for t in avail for v in get_target(t).expand("int8"))
    assert sorted(a["precision"] for a in arts) == expected
    gate = set(HALVES["A"])
    for a in arts:
        p = a["parity"]
        d, ev = p["detections"], p["evidence"]
        label = f"{a['target']}/{a['precision']}"
        assert_int8_verdict(a, cp.stdout)
        assert ev["faces"] >= 100 and ev["strong"], (label, ev)
        assert {g["name"] for g in ev["gate"]} == gate
        if a["precision"] != "int8-weight":  # weight-only int8 calibrates nothing
            assert {c["name"] for c in ev.get("calibration", [])} == set(HALVES["B"]), label
        assert not ev.get("overlap"), (label, ev.get("overlap"))
        sh = p["shift"]  # the shift gate: the mosaics of the gate photos, its evidence at half of --min-evidence
        assert sh["layouts"] == ["2x2", "3x3"] and sh["evidence"]["faces"] >= 50 and sh["evidence"]["strong"], label
        assert sh["mosaics"] == ["mosaic2x2-1", "mosaic2x2-2", "mosaic3x3-1"], label  # 8 photos: each once per layout
        if a["target"] == "onnx":  # the method chosen across kinds of calibration image, by the recorded rule
            cal = a["meta"]["io"]["calibration"]
            kinds = cal["kinds"]
            assert kinds["portrait"] and kinds["crowd"] and not set(kinds["portrait"]) & set(kinds["crowd"])
            assert sorted(kinds["portrait"] + kinds["crowd"]) == sorted(HALVES["B"])
            worst = {m: e["worst"] for m, e in cal["cross_kind_error"].items()}
            assert cal["method"] == choose(worst, UNCLIPPED), cal
