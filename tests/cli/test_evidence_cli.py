"""Proof that carries evidence (issue 13): the evidence on every PASS/FAIL line and in the manifest, the
weak-evidence exit of export, check and release, the overlap of calibration and gate, and the fidelity
table of `zoo report`. Real checkpoints, real ONNX exports, the real CLI in its own process."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import IMAGES, ROOT, assert_clean_error, zoo

BUILTIN = ROOT / "zoo" / "core" / "data" / "images"  # the 3 built-in photos, one face each
LINE_EVIDENCE = re.compile(r"evidence (\d+) img (\d+) faces \(<16px (\d+), 16-64px (\d+), >64px (\d+)\)")


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _line(stdout: str, precision: str) -> str:
    (line,) = [l for l in stdout.splitlines() if l.startswith(("PASS", "FAIL")) and f" {precision} " in l]
    return line


@pytest.fixture(scope="module")
def default_fp16(tmp_path_factory):
    """rfb-320 to ONNX fp16 with no --images: the default parity set (the 16 pinned photos, ZOO_IMAGES_DIR)."""
    out = tmp_path_factory.mktemp("evidence-default")
    cp = zoo("export", "--model", "rfb-320", "--to", "onnx", "--precision", "fp16", "--out", out)
    return out, cp


def test_the_default_parity_set_is_the_16_pinned_photos_and_its_evidence_is_printed(default_fp16):
    from zoo.core.parity_set import pinned_photos

    out, cp = default_fp16
    assert cp.returncode == 0, cp.stdout + cp.stderr
    line = _line(cp.stdout, "fp16")
    assert line.startswith("PASS") and "weak evidence" not in line
    images, faces, *by = map(int, LINE_EVIDENCE.search(line).groups())
    (art,) = _manifest(out)["artifacts"]
    ev, det = art["parity"]["evidence"], art["parity"]["detections"]
    assert images == ev["images"] == 16 and faces == ev["faces"] == det["reference"] >= 250
    assert by == [ev["by_size"][b] for b in ("<16", "16-64", ">64")] and sum(by) == faces
    assert all(n > 0 for n in by), "the pinned photos hold faces of every size"
    assert f"det {det['matched']}/{det['reference']}" in line
    assert ev["min_faces"] == 250 and ev["strong"] is True
    assert ev["gate"] == [{"name": f.local, "sha256": f.sha256} for f in pinned_photos()]
    assert "calibration" not in ev, "fp16 uses no calibration"
    assert {b: c["reference"] for b, c in det["by_size"].items()} == ev["by_size"]
    # the photos are read where they are, never copied into the release folder (web/ultraface.js: the web
    # module every folder holding an ONNX file of a web head gets, issue 34)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "manifest.json", "onnx/rfb-320-decoded-fp16.onnx", "web/ultraface.js"]


def test_weak_evidence_exits_2_then_allow_and_min_evidence_decide(tmp_path):
    out = tmp_path / "weak"
    args = ["export", "--model", "slim-320", "--to", "onnx", "--precision", "fp16", "--out", out, "--images", BUILTIN]
    cp = zoo(*args)
    assert_clean_error(cp, "weak evidence", "1 fp16/int8 artifact(s)", "only 3 reference faces", "--min-evidence 250",
                       "--images", "ZOO_IMAGES_DIR", "--allow-weak-evidence", code=2)
    line = _line(cp.stdout, "fp16")
    assert line.startswith("PASS") and "evidence 3 img 3 faces (<16px 0, 16-64px 0, >64px 3)" in line
    assert "weak evidence (3 faces < 250)" in line
    (art,) = _manifest(out)["artifacts"]  # written all the same, with its evidence
    assert art["parity"]["passed"] and art["parity"]["evidence"]["strong"] is False
    assert (art["parity"]["evidence"]["faces"], art["parity"]["evidence"]["min_faces"]) == (3, 250)

    cp = zoo(*args, "--allow-weak-evidence", check=0)
    assert "weak evidence (3 faces < 250)" in _line(cp.stdout, "fp16") and "error" not in cp.stderr
    cp = zoo(*args, "--min-evidence", "3", check=0)
    assert "weak evidence" not in cp.stdout + cp.stderr
    assert _manifest(out)["artifacts"][0]["parity"]["evidence"] | {"gate": None} == {
        "images": 3, "faces": 3, "by_size": {"<16": 0, "16-64": 0, ">64": 3}, "min_faces": 3, "strong": True, "gate": None}
    cp = zoo(*args, "--min-evidence", "4")
    assert_clean_error(cp, "only 3 reference faces", "--min-evidence 4", code=2)
    assert "weak evidence (3 faces < 4)" in _line(cp.stdout, "fp16")
    assert _manifest(out)["artifacts"][0]["parity"]["evidence"]["min_faces"] == 4


def test_fp32_is_never_weak_evidence(tmp_path):
    cp = zoo("export", "--model", "slim-320", "--to", "onnx", "--out", tmp_path / "o", "--images", BUILTIN, check=0)
    line = _line(cp.stdout, "fp32")
    assert "evidence 3 img 3 faces" in line and "weak evidence" not in line


def test_check_judges_its_own_evidence(default_fp16):
    out, _ = default_fp16
    cp = zoo("check", out, "--images", BUILTIN)
    assert_clean_error(cp, "weak evidence", "only 3 reference faces", "--allow-weak-evidence", code=2)
    assert "weak evidence (3 faces < 250)" in cp.stdout
    res = json.loads(zoo("check", out, "--images", BUILTIN, "--allow-weak-evidence", "--json", check=0).stdout)
    (r,) = res["results"]
    assert r["weak_evidence"] is True and res["min_evidence"] == 250
    assert r["parity"]["evidence"]["faces"] == 3 and r["parity"]["evidence"]["strong"] is False
    cp = zoo("check", out, check=0)  # the default: the 16 pinned photos
    assert LINE_EVIDENCE.search(cp.stdout).group(1) == "16" and "weak evidence" not in cp.stdout


@pytest.fixture(scope="module")
def overlapping_int8(tmp_path_factory):
    """ONNX int8 calibrated on two of the built-in photos (one renamed) and a mosaic, gated on all three."""
    root = tmp_path_factory.mktemp("overlap")
    calib = root / "calib"
    calib.mkdir()
    shutil.copy(BUILTIN / "astronaut.jpg", calib / "astronaut.jpg")
    shutil.copy(BUILTIN / "camera.jpg", calib / "renamed-camera.jpg")  # same photo, another name: still overlap
    shutil.copy(ROOT / "zoo" / "core" / "data" / "calibration" / "mosaic2x2.jpg", calib / "mosaic2x2.jpg")
    out = root / "out"
    cp = zoo("export", "--model", "slim-320", "--to", "onnx", "--precision", "int8", "--out", out,
             "--images", BUILTIN, "--calib", calib, "--allow-weak-evidence")
    return out, calib, cp


def test_overlap_of_calibration_and_gate_is_reported_and_recorded(overlapping_int8):
    from zoo.core.fsutil import sha256_file

    out, calib, cp = overlapping_int8
    # the int8 tier may still fail until the quantizers hold it; the overlap is reported either way
    assert cp.returncode in (0, 2) and "Traceback" not in cp.stderr, cp.stderr
    assert "weak evidence" not in cp.stderr, "--allow-weak-evidence"
    line = _line(cp.stdout, "int8")
    assert "calibration overlaps the gate: 2 images" in line and "weak evidence (3 faces < 250)" in line
    (art,) = _manifest(out)["artifacts"]
    ev = art["parity"]["evidence"]
    assert ev["overlap"] == ["astronaut.jpg", "camera.jpg"]  # gate names, matched by content
    assert ev["calibration"] == [{"name": p.name, "sha256": sha256_file(p)} for p in sorted(calib.iterdir())]
    assert [g["name"] for g in ev["gate"]] == ["astronaut.jpg", "camera.jpg", "grace_hopper.jpg"]


def test_check_compares_its_images_with_the_recorded_calibration(overlapping_int8, tmp_path):
    out, calib, _ = overlapping_int8
    gate = tmp_path / "gate"
    gate.mkdir()
    shutil.copy(calib / "mosaic2x2.jpg", gate / "group.jpg")  # a calibration image under another name
    shutil.copy(BUILTIN / "grace_hopper.jpg", gate / "grace_hopper.jpg")  # not calibration material
    cp = zoo("check", out, "--images", gate, "--min-evidence", "1", "--json")
    assert cp.returncode in (0, 2) and "Traceback" not in cp.stderr, cp.stderr
    (r,) = json.loads(cp.stdout)["results"]
    assert r["parity"]["evidence"]["overlap"] == ["group.jpg"]
    assert r["parity"]["evidence"]["calibration"] == _manifest(out)["artifacts"][0]["parity"]["evidence"]["calibration"]
    cp = zoo("check", out, "--images", IMAGES, "--min-evidence", "1")
    assert "calibration overlaps" not in cp.stdout  # the pinned photos are no calibration material here
    assert LINE_EVIDENCE.search(cp.stdout).group(1) == "16"


def test_check_refuses_a_damaged_calibration_record(overlapping_int8, tmp_path):
    out, _, _ = overlapping_int8
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = _manifest(copy)
    m["artifacts"][0]["parity"]["evidence"]["calibration"] = [{"name": "x.jpg", "sha256": ["not", "text"]}]
    (copy / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(zoo("check", copy, "--images", BUILTIN), "onnx/int8/raw", "calibration", "damaged")


def test_release_exits_2_on_weak_evidence_unless_allowed(tmp_path):
    out = tmp_path / "rel"
    args = ["release", "--out", out, "--models", "slim-320", "--targets", "onnx", "--precisions", "fp16", "--images", BUILTIN]
    cp = zoo(*args)
    assert_clean_error(cp, "weak evidence", "1 fp16/int8 artifact(s)", "only 3 reference faces", "--allow-weak-evidence", code=2)
    assert "weak evidence (3 faces < 250)" in cp.stdout
    # resumed: the artifact is reused, its recorded evidence judged against this run's flags
    cp = zoo(*args, "--allow-weak-evidence", check=0)
    assert "up to date" in cp.stderr and "exporting" not in cp.stderr
    (art,) = _manifest(out)["artifacts"]
    assert art["parity"]["evidence"]["faces"] == 3 and art["parity"]["evidence"]["strong"] is False
    cp = zoo(*args, "--min-evidence", "3", check=0)
    assert "up to date" in cp.stderr and "weak evidence" not in cp.stdout + cp.stderr
    (art,) = _manifest(out)["artifacts"]
    assert art["parity"]["evidence"]["min_faces"] == 3 and art["parity"]["evidence"]["strong"] is True


def test_report_shows_the_fidelity_table_and_renders_older_manifests(default_fp16, tmp_path):
    out, _ = default_fp16
    (art,) = _manifest(out)["artifacts"]
    det, ev = art["parity"]["detections"], art["parity"]["evidence"]
    md = zoo("report", out, check=0).stdout
    assert "### Fidelity" in md
    (row,) = [l for l in md.splitlines() if l.startswith("| rfb-320 | onnx | fp16 | decoded |") and "faces /" in l]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{ev['faces']} faces / 16 img"
    assert cells[5] == f"{det['matched']} / {det['missed']} / {det['extra']}"
    st = det["strict"]
    assert cells[6] == f"{st['matched']} / {st['missed']} / {st['extra']}"
    assert cells[7:10] == [f"{c['matched']} / {c['missed']} / {c['extra']}" for c in det["by_size"].values()]
    assert cells[10] == f"{det['min_iou']:.4f}"
    rep = json.loads(zoo("report", out, "--format", "json", check=0).stdout)
    assert rep["artifacts"][0]["parity"]["by_size"] == det["by_size"]
    assert rep["artifacts"][0]["parity"]["max_score_change"] == det["max_score_change"]

    # a manifest written before the size buckets and the evidence
    old = tmp_path / "old"
    shutil.copytree(out, old)
    m = _manifest(old)
    m["artifacts"][0]["parity"].pop("evidence")
    m["artifacts"][0]["parity"]["detections"].pop("by_size")
    m["artifacts"][0]["parity"]["detections"].pop("strict")
    (old / "manifest.json").write_text(json.dumps(m))
    md = zoo("report", old, check=0).stdout
    (row,) = [l for l in md.splitlines() if l.startswith("| rfb-320 | onnx | fp16 | decoded |") and " / " in l]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "—" and cells[6:10] == ["—", "—", "—", "—"]
    assert cells[5] == f"{det['matched']} / {det['missed']} / {det['extra']}"  # what it did record still shows
    csv_text = zoo("report", old, "--format", "csv", check=0).stdout
    assert "lt16_matched" in csv_text.splitlines()[0]
