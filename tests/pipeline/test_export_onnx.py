"""Issue 3: `zoo export` / `zoo check`, the ONNX target, the manifest and the parity engine."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import HALVES, CKPT_DIR, IMAGES, REFERENCE, ROOT, assert_built, assert_clean_error, ort_run, zoo

SHA_HEX = set("0123456789abcdef")


def validate_manifest(folder: Path, m: dict) -> None:
    """The public manifest schema (docs/manifest.md)."""
    assert set(m["model"]) >= {"id", "arch", "input_size", "labels", "checkpoint_sha256"}
    assert isinstance(m["model"]["input_size"], list) and len(m["model"]["input_size"]) == 2
    assert isinstance(m["artifacts"], list) and isinstance(m["failed"], list)
    for a in m["artifacts"]:
        assert set(a) >= {"target", "precision", "head", "layout", "primary", "files", "tools", "parity"}
        assert a["layout"] in ("NCHW", "NHWC") and a["head"] in ("decoded", "raw")
        assert not Path(a["primary"]).is_absolute() and (folder / a["primary"]).exists()
        assert a["primary"] in [f["path"] for f in a["files"]]
        for f in a["files"]:
            assert set(f) == {"path", "sha256", "bytes"} and not Path(f["path"]).is_absolute()
            assert len(f["sha256"]) == 64 and set(f["sha256"]) <= SHA_HEX
            assert (folder / f["path"]).stat().st_size == f["bytes"]
        assert isinstance(a["tools"], dict) and a["tools"]
        assert isinstance(a["parity"]["passed"], bool)
    text = json.dumps(m)
    assert str(folder) not in text and "/tmp" not in text, "no absolute paths in the manifest"


@pytest.fixture(scope="module")
def onnx_exports(export_dir):
    out = {}
    for model_id in ("rfb-320", "slim-320"):
        for head in ("decoded", "raw"):
            folder, manifest, cp = export_dir(model_id, "onnx", "fp32", head)
            assert cp.returncode == 0, cp.stderr[-2000:]
            out[(model_id, head)] = (folder, manifest)
    return out


REFS = {
    ("rfb-320", "decoded"): "version-RFB-320.onnx",
    ("rfb-320", "raw"): "version-RFB-320_simplified.onnx",
    ("slim-320", "decoded"): "version-slim-320.onnx",
    ("slim-320", "raw"): "version-slim-320_simplified.onnx",
}


@pytest.mark.smoke
@pytest.mark.parametrize("key", list(REFS))
def test_exported_onnx_matches_original_in_plain_onnxruntime(key, onnx_exports, batch_cache):
    folder, manifest = onnx_exports[key]
    validate_manifest(folder, manifest)
    (art,) = manifest["artifacts"]
    assert (art["target"], art["precision"], art["head"]) == ("onnx", "fp32", key[1])
    assert art["parity"]["passed"] and art["parity"]["detections"]["missed"] == 0 and art["parity"]["detections"]["extra"] == 0
    x, _, _ = batch_cache((320, 240))
    ours = ort_run(folder / art["primary"], x)
    theirs = ort_run(REFERENCE / "onnx" / REFS[key], x)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
    # raw offsets: both graphs fold BatchNorm; the original's fold rounds differently (see test_core)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5 if key[1] == "decoded" else 5e-5)


def test_onnx_graph_properties_and_metadata(onnx_exports):
    import onnx

    from zoo.exporters.onnx import OPSET

    folder, manifest = onnx_exports[("rfb-320", "decoded")]
    art = manifest["artifacts"][0]
    m = onnx.load(str(folder / art["primary"]))
    assert not [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    assert m.opset_import[0].version == OPSET and art["tools"]["opset"] == str(OPSET)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["model_id"] == "rfb-320" and props["arch"] == "rfb" and props["input_size"] == "320x240"
    assert props["labels"] == "BACKGROUND,face" and props["head"] == "decoded"
    assert props["prior_count"] == "4420" and json.loads(props["variances"]) == [0.1, 0.2]
    assert props["mean"] == "127.0" and props["std"] == "128.0"
    assert props["checkpoint_sha256"] == manifest["model"]["checkpoint_sha256"]
    assert "zoo_version" in props
    assert json.loads(props["zoo.meta"])["model_id"] == "rfb-320"  # the key other tools read: public interface
    assert str(ROOT) not in m.SerializeToString().decode("latin-1")


def test_two_exports_are_byte_identical(onnx_exports, tmp_path, halves):
    folder, manifest = onnx_exports[("slim-320", "raw")]
    # the export_dir fixture's arguments
    zoo("export", "--model", "slim-320", "--to", "onnx", "--head", "raw", "--out", tmp_path, "--images", halves["B"],
        "--calib", halves["A"], "--min-evidence", "100", check=0)
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert [f["sha256"] for a in again["artifacts"] for f in a["files"]] == [f["sha256"] for a in manifest["artifacts"] for f in a["files"]]
    assert (tmp_path / "manifest.json").read_bytes() == (folder / "manifest.json").read_bytes()


def test_check_passes_then_fails_on_tampered_weights(onnx_exports, tmp_path):
    import onnx
    from onnx import numpy_helper

    folder, _ = onnx_exports[("rfb-320", "raw")]
    cp = zoo("check", folder, "--images", IMAGES, "--json", check=0)
    res = json.loads(cp.stdout)
    assert res["passed"] and res["results"][0]["passed"]
    # tamper: scale one weight tensor of the box head, keep the manifest's sha256 consistent
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    m = onnx.load(str(copy / art["primary"]))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    victim = convs[-1].input[1]  # the last level's regression head
    for init in m.graph.initializer:
        if init.name == victim:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(m, str(copy / art["primary"]))
    from zoo.core.fsutil import sha256_file

    art["files"][0]["sha256"] = sha256_file(copy / art["primary"])
    art["files"][0]["bytes"] = (copy / art["primary"]).stat().st_size
    (copy / "manifest.json").write_text(json.dumps(manifest))
    cp = zoo("check", copy, "--images", IMAGES)
    assert cp.returncode == 2, cp.stderr
    assert "Traceback" not in cp.stderr
    assert "output 'locations' diverges" in cp.stderr or "output 'boxes' diverges" in cp.stderr
    assert art["primary"] in cp.stderr


def test_check_detects_changed_file_by_sha(onnx_exports, tmp_path):
    folder, _ = onnx_exports[("slim-320", "decoded")]
    copy = tmp_path / "flipped"
    shutil.copytree(folder, copy)
    art = json.loads((copy / "manifest.json").read_text())["artifacts"][0]
    data = bytearray((copy / art["primary"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / art["primary"]).write_bytes(bytes(data))
    cp = zoo("check", copy, "--images", IMAGES)
    assert cp.returncode == 2 and "sha256 mismatch" in cp.stderr and art["primary"] in cp.stderr


@pytest.mark.parametrize("runtime", [None, "opencv"])
def test_detect_with_artifact_equals_model(onnx_exports, runtime):
    folder, manifest = onnx_exports[("rfb-320", "raw")]
    primary = folder / manifest["artifacts"][0]["primary"]
    by_model = json.loads(zoo("detect", IMAGES, "--model", "rfb-320", "--json", check=0).stdout)
    args = ["detect", IMAGES, "--artifact", primary, "--json"] + (["--runtime", runtime] if runtime else [])
    by_art = json.loads(zoo(*args, check=0).stdout)
    for a, b in zip(by_model["results"], by_art["results"]):
        assert len(a["detections"]) == len(b["detections"]), a["image"]
        for da, db in zip(a["detections"], b["detections"]):
            np.testing.assert_allclose(da["box"], db["box"], atol=0.05)
            assert da["score"] == pytest.approx(db["score"], abs=1e-4)


def test_onnx_fp16_and_int8(export_dir):
    folder, manifest, cp = export_dir("slim-320", "onnx", "fp16,int8", "raw")
    assert_built(manifest, cp)
    validate_manifest(folder, manifest)
    arts = {a["precision"]: a for a in manifest["artifacts"]}
    assert set(arts) == {"fp16", "int8"}
    fp32_bytes = (CKPT_DIR / "version-slim-320.pth").stat().st_size
    assert arts["fp16"]["files"][0]["bytes"] < 0.6 * fp32_bytes
    assert arts["int8"]["files"][0]["bytes"] < 0.6 * fp32_bytes
    d = arts["int8"]["parity"]["detections"]
    assert d["recall"] >= 0.99 and d["extra_rate"] <= 0.01
    assert arts["int8"]["parity"]["tier"]["min_iou"] == 0.5
    for a in arts.values():  # half B of the photos (~145 faces): strong under --min-evidence 100
        ev = a["parity"]["evidence"]
        assert ev["images"] == len(HALVES["B"]) and ev["faces"] >= 100 and ev["strong"] and ev["min_faces"] == 100
    # the fixture calibrates on half A and gates on half B: both recorded, disjoint
    ev = arts["int8"]["parity"]["evidence"]
    assert {c["name"] for c in ev["calibration"]} == set(HALVES["A"]) and {g["name"] for g in ev["gate"]} == set(HALVES["B"])
    assert not ev.get("overlap") and "calibration overlaps" not in cp.stdout


# ----------------------------------------------------------------------------- bad input & isolation

def test_unknown_target_suggests_and_lists(tmp_path):
    cp = zoo("export", "--model", "rfb-320", "--to", "onnx,mnm", "--out", tmp_path / "o")
    assert_clean_error(cp, "unknown target 'mnm'", "valid targets", "onnx")
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes((CKPT_DIR / "version-RFB-320.pth").read_bytes()[:1000])
    out = tmp_path / "out"
    cp = zoo("export", "--checkpoint", bad, "--arch", "rfb", "--to", "onnx", "--out", out)
    assert_clean_error(cp, "truncated or corrupt")
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_out_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert_clean_error(zoo("export", "--model", "rfb-320", "--to", "onnx", "--out", f), "is a file")
    assert_clean_error(zoo("export", "--model", "rfb-320", "--to", "onnx", "--out", f / "sub"), "is a file")


def test_out_unwritable():
    assert_clean_error(zoo("export", "--model", "rfb-320", "--to", "onnx", "--out", "/sys/zoo-cannot-write-here"), "cannot write")


def test_empty_images_folder(tmp_path, onnx_exports):
    (tmp_path / "empty").mkdir()
    assert_clean_error(zoo("export", "--model", "rfb-320", "--to", "onnx", "--out", tmp_path / "o", "--images", tmp_path / "empty"), "no images")
    folder, _ = onnx_exports[("rfb-320", "decoded")]
    assert_clean_error(zoo("check", folder, "--images", tmp_path / "empty"), "no images")
    assert_clean_error(zoo("check", tmp_path), "no manifest.json")


def test_failing_targets_are_contained(tmp_path):
    """A converter that crashes, hangs, raises or is missing fails alone; ONNX still completes."""
    plugins = ("crash=fault_targets:CrashTarget,hang=fault_targets:HangTarget,"
               "boom=fault_targets:RaiseTarget,missing=fault_targets:MissingTarget")
    env = {"ZOO_TARGET_PLUGINS": plugins, "PYTHONPATH": str(ROOT / "tests" / "pipeline")}
    out = tmp_path / "out"
    cp = zoo("export", "--model", "slim-320", "--to", "crash,hang,onnx,boom,missing", "--out", out, "--images", IMAGES, env=env)
    assert cp.returncode == 2, cp.stderr
    assert "Traceback" not in cp.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [(a["target"], a["parity"]["passed"]) for a in m["artifacts"]] == [("onnx", True)]
    errors = {f["target"]: f["error"] for f in m["failed"]}
    assert "SIGSEGV" in errors["crash"]
    assert "timed out" in errors["hang"]
    assert "converter exploded" in errors["boom"]
    assert "no_such_runtime_module_xyz" in errors["missing"] and "pip install" in errors["missing"]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["manifest.json", "onnx/slim-320-decoded-fp32.onnx", "web/ultraface.js"], files  # + the web module


def test_end_to_end_nms_graph(export_dir, batch_cache):
    """--nms: ONNX NonMaxSuppression inside the graph; its detections equal ours on the original's outputs."""
    from zoo.core.model.processing import postprocess

    folder, manifest, cp = export_dir("rfb-320", "onnx", "fp32", None, extra=("--nms",))
    assert cp.returncode == 0, cp.stderr[-2000:]
    arts = {a["head"]: a for a in manifest["artifacts"]}
    assert set(arts) == {"decoded", "nms"} and arts["nms"]["parity"]["passed"]
    assert arts["nms"]["parity"]["detections"]["matched"] == arts["decoded"]["parity"]["detections"]["matched"] > 100
    rows = arts["nms"]["parity"]["outputs"]["detections"]  # its one tensor, compared after the same NMS
    assert rows["passed"] and rows["max_abs"] < 1e-4 and rows["rows"]["paired"] == rows["rows"]["reference"] > 100
    x, _, sizes = batch_cache((320, 240))
    (dets,) = ort_run(folder / arts["nms"]["primary"], x[:1])
    scores, boxes = ort_run(REFERENCE / "onnx" / "version-RFB-320.onnx", x[:1])
    expected = postprocess(scores[0], boxes[0], 1, 1, ["BACKGROUND", "face"])
    assert dets.shape == (len(expected), 6)
    got = sorted(dets.tolist(), key=lambda r: -r[4])
    for r, e in zip(got, expected):
        np.testing.assert_allclose(r[:4], e.box, atol=1e-5)
        assert r[4] == pytest.approx(e.score, abs=1e-5) and r[5] == 1
    by_art = json.loads(zoo("detect", IMAGES / "1.jpg", "--artifact", folder / arts["nms"]["primary"], "--json", check=0).stdout)
    by_model = json.loads(zoo("detect", IMAGES / "1.jpg", "--model", "rfb-320", "--json", check=0).stdout)
    assert len(by_art["results"][0]["detections"]) == len(by_model["results"][0]["detections"])


def test_a_requested_onnx_is_also_the_input_of_the_others(tmp_path):
    """--head raw: the ONNX artifact asked for is the file MNN converts from; it is placed in the
    folder before MNN runs, and MNN still finds it there."""
    out = tmp_path / "out"
    cp = zoo("export", "--model", "rfb-320", "--to", "onnx,mnn", "--head", "raw", "--out", out,
             "--images", IMAGES / "1.jpg", "--min-evidence", "1")
    assert cp.returncode == 0, cp.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert sorted((a["target"], a["head"], a["parity"]["passed"]) for a in m["artifacts"]) == [
        ("mnn", "raw", True), ("onnx", "raw", True)]
    onnx_sha = next(f["sha256"] for a in m["artifacts"] if a["target"] == "onnx" for f in a["files"])
    assert next(a for a in m["artifacts"] if a["target"] == "mnn")["lineage"]["onnx_sha256"] == onnx_sha
