"""`zoo verify` fails when it should: a release is re-proven against its golden kit, not against itself.

A small release (rfb-320, ONNX fp32, parity on three photos: ~20 s) is built once; each test changes a
copy. The hash checks alone cannot catch an artifact whose sha256 was re-recorded after it was changed:
only the golden kit's stored PyTorch outputs can, so these tests change one weight of a loadable file
and re-record every hash of it in the manifest.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, zoo
from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.pipeline.verify import verify

pytestmark = pytest.mark.smoke


#: a release built earlier with SMALL_RELEASE_ARGS (scripts/mutation.py builds it once for its many runs)
PREBUILT = os.environ.get("ZOO_TEST_SMALL_RELEASE")
SMALL_RELEASE_ARGS = ["--models", "rfb-320", "--targets", "onnx", "--precisions", "fp32", "--jobs", "2"]
PHOTOS = ("1.jpg", "2.jpg", "3.jpg")


def build_small_release(out: Path, photos: Path) -> None:
    for n in PHOTOS:
        (photos / n).symlink_to(IMAGES / n)
    zoo("release", "--out", out, *SMALL_RELEASE_ARGS, "--images", photos, check=0)


@pytest.fixture(scope="module")
def small_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify-release")
    if PREBUILT:
        shutil.copytree(PREBUILT, out, dirs_exist_ok=True)
    else:
        build_small_release(out, tmp_path_factory.mktemp("verify-photos"))
    return out


def _copy(release: Path, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "release"
    shutil.copytree(release, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


def _rerecord(folder: Path, manifest: dict, rel: str) -> None:
    """Record the file's new sha256 and size wherever the manifest lists it (what a forger would do)."""
    entries = [f for a in manifest["artifacts"] for f in a["files"]] + manifest.get("files", [])
    hits = [f for f in entries if f["path"] == rel]
    assert hits, rel
    for f in hits:
        f["sha256"], f["bytes"] = sha256_file(folder / rel), (folder / rel).stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def test_an_intact_release_verifies(small_release):
    cp = zoo("verify", small_release, "--json", check=0)
    res = json.loads(cp.stdout)
    golden = [c for c in res["cases"] if not c["name"].startswith("file ")]
    assert [c["name"] for c in golden] == ["rfb-320 onnx/fp32/decoded"]
    p = golden[0]["parity"]
    # the golden comparison really compared: every output tensor, and the three golden photos' faces
    assert set(p["outputs"]) == {"scores", "boxes"} and all(o["passed"] for o in p["outputs"].values())
    assert p["detections"]["reference"] >= 3 and p["detections"]["matched"] == p["detections"]["reference"]


def test_verify_runs_each_artifact_in_each_listed_runtime(small_release):
    """Issue 32: `--runtime a,b`: the golden kit through each artifact once per named runtime, each case naming
    it; every file case once; the typed API gives the same."""
    import zoo as api

    res = json.loads(zoo("verify", small_release, "--runtime", "onnxruntime,opencv", "--json", check=0).stdout)
    golden = [(c["name"], c["runtime"], c["passed"]) for c in res["cases"] if not c["name"].startswith("file ")]
    assert golden == [("rfb-320 onnx/fp32/decoded", "onnxruntime", True), ("rfb-320 onnx/fp32/decoded", "opencv", True)]
    files = [c["name"] for c in res["cases"] if c["name"].startswith("file ")]
    assert files and len(files) == len(set(files))
    assert res["runtimes"] == ["onnxruntime", "opencv"] and res["passed"]
    r = api.verify(small_release, runtime=["opencv"])
    assert r.passed and [(c.name, c.runtime) for c in r.cases if c.runtime] == [("rfb-320 onnx/fp32/decoded", "opencv")]


def test_one_changed_weight_with_rerecorded_hashes_fails_naming_it(small_release, tmp_path):
    import onnx
    from onnx import numpy_helper

    folder, manifest = _copy(small_release, tmp_path)
    art = manifest["artifacts"][0]
    path = folder / art["primary"]
    m = onnx.load(str(path))
    victim = [n for n in m.graph.node if n.op_type == "Conv"][0].input[1]  # the first convolution: every output
    init = next(i for i in m.graph.initializer if i.name == victim)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] += 0.5  # one weight
    init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    onnx.save(m, str(path))
    _rerecord(folder, manifest, art["primary"])
    cp = zoo("verify", folder)
    assert cp.returncode == 2, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr
    assert "FAIL  rfb-320 onnx/fp32/decoded" in cp.stdout, cp.stdout
    err = [l for l in cp.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and art["primary"] in err[0] and "diverges" in err[0], cp.stderr
    # every file hash still agrees: the golden kit alone caught it
    assert not [l for l in cp.stdout.splitlines() if l.startswith("FAIL  file ")], cp.stdout


def test_changed_golden_outputs_fail_too(small_release, tmp_path):
    """The golden kit is the measuring stick: a kit whose stored outputs were changed (hash re-recorded)
    no longer describes the artifact, and verify says so."""
    folder, manifest = _copy(small_release, tmp_path)
    rel = "golden/rfb-320/scores.npy"
    s = np.load(folder / rel)
    s[0, :, 1] = np.clip(s[0, :, 1] + 0.01, 0, 1)
    s[0, :, 0] = 1 - s[0, :, 1]
    np.save(folder / rel, s)
    _rerecord(folder, manifest, rel)
    cp = zoo("verify", folder)
    assert cp.returncode == 2, cp.stdout + cp.stderr
    assert "output 'scores' diverges" in cp.stderr, cp.stderr


def test_a_manifest_listing_failures_does_not_verify(small_release, tmp_path):
    folder, manifest = _copy(small_release, tmp_path)
    manifest["failed"] = [{"model": "rfb-320", "target": "mnn", "precision": "int8", "head": "raw",
                           "error": "converter crashed (SIGSEGV)"}]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    cp = zoo("verify", folder, "--json")
    assert cp.returncode == 2, cp.stdout + cp.stderr
    res = json.loads(cp.stdout)
    assert not res["passed"]
    failing = [c for c in res["cases"] if not c["passed"]]
    assert [c["name"] for c in failing] == ["rfb-320 mnn/int8/raw"]
    assert "converter crashed (SIGSEGV)" in failing[0]["failure"]
    # the artifacts that were built still verify
    assert all(c["passed"] for c in res["cases"] if c["name"] != "rfb-320 mnn/int8/raw")
    cp = zoo("verify", folder)
    assert cp.returncode == 2 and "rfb-320 mnn/int8/raw" in cp.stderr and "failed" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------- the same, in-process (what the
# mutation run sees: mutmut picks the tests that call a function in its own process)

KEY = "rfb-320 onnx/fp32/decoded"


def _tamper_weight(folder: Path, manifest: dict) -> str:
    import onnx
    from onnx import numpy_helper

    art = manifest["artifacts"][0]
    m = onnx.load(str(folder / art["primary"]))
    victim = [n for n in m.graph.node if n.op_type == "Conv"][0].input[1]
    init = next(i for i in m.graph.initializer if i.name == victim)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    onnx.save(m, str(folder / art["primary"]))
    return art["primary"]


def test_verify_in_process(small_release, tmp_path):
    res = verify(small_release)
    assert res["passed"] and res["folder"] == str(small_release) and "runtime" not in res and "partial" not in res
    files = [c for c in res["cases"] if c["name"].startswith("file ")]
    m = json.loads((small_release / "manifest.json").read_text())
    assert [c["name"] for c in files] == [f"file {f['path']}" for f in m["files"]]
    assert all(c["passed"] and c["failure"] is None for c in files)
    (case,) = [c for c in res["cases"] if not c["name"].startswith("file ")]
    assert case["name"] == KEY and case["passed"] and case["failure"] is None
    assert case["parity"]["images"] == 3 and set(case["parity"]["outputs"]) == {"scores", "boxes"}
    assert [g["name"] for g in case["parity"]["evidence"]["gate"]] == ["astronaut.jpg", "camera.jpg", "grace_hopper.jpg"]

    # one changed weight, hashes re-recorded: the golden kit catches it
    folder, manifest = _copy(small_release, tmp_path / "w")
    primary = _tamper_weight(folder, manifest)
    _rerecord(folder, manifest, primary)
    res = verify(folder)
    assert not res["passed"]
    bad = [c for c in res["cases"] if not c["passed"]]
    assert [c["name"] for c in bad] == [KEY]
    assert bad[0]["failure"].startswith(f"{primary}: output 'scores' diverges") or \
        bad[0]["failure"].startswith(f"{primary}: output 'boxes' diverges"), bad[0]["failure"]
    assert bad[0]["failure"] == f"{primary}: {bad[0]['parity']['failures'][0]}"  # the first of its failures
    assert not bad[0]["parity"]["passed"]


def test_verify_in_process_hashes_failures_and_runtime(small_release, tmp_path):
    # an artifact byte changed, hash not re-recorded: named, not run
    folder, manifest = _copy(small_release, tmp_path / "a")
    primary = manifest["artifacts"][0]["primary"]
    with open(folder / primary, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    res = verify(folder)
    bad = [c for c in res["cases"] if not c["passed"]]
    assert [c["name"] for c in bad] == [KEY], bad
    assert primary in bad[0]["failure"] and bad[0]["failure"].endswith("(changed since release)"), bad
    assert "parity" not in bad[0]
    # a golden file changed, hash not re-recorded: the file and the artifact it would prove fail
    folder, manifest = _copy(small_release, tmp_path / "g")
    (folder / "golden" / "rfb-320" / "boxes.npy").write_bytes(b"\x93NUMPY damaged")
    res = verify(folder)
    bad = {c["name"]: c["failure"] for c in res["cases"] if not c["passed"]}
    assert set(bad) == {"file golden/rfb-320/boxes.npy", KEY}, bad
    assert bad[KEY] == "golden kit of rfb-320 is corrupt"
    # failed artifacts listed in the manifest: each a failing case, the built ones still verified
    folder, manifest = _copy(small_release, tmp_path / "f")
    manifest["failed"] = [{"model": "rfb-320", "target": "mnn", "precision": "int8", "head": "raw", "error": "boom"},
                          {"model": "rfb-320", "target": "ncnn", "precision": "fp32", "head": "raw", "error": ""}]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    res = verify(folder)
    assert not res["passed"]
    bad = {c["name"]: c["failure"] for c in res["cases"] if not c["passed"]}
    assert bad == {"rfb-320 mnn/int8/raw": "rfb-320 mnn/int8/raw failed when the release was built: boom",
                   "rfb-320 ncnn/fp32/raw": "rfb-320 ncnn/fp32/raw failed when the release was built: no reason recorded"}
    assert next(c for c in res["cases"] if c["name"] == KEY)["passed"]
    # another runtime: the ONNX file through OpenCV DNN, and the runtime recorded
    res = verify(small_release, runtime="opencv")
    assert res["passed"] and res["runtime"] == "opencv" and res["left_out"] == []
    assert next(c for c in res["cases"] if c["name"] == KEY)["parity"]["runtime"] == "opencv"  # and it ran there


def _twin(folder: Path, manifest: dict) -> str:
    """A second artifact beside the release's one: a copy of its ONNX file listed as the fp16 flavour (proven on
    the fp16 tier, which an fp32 file meets), so a release of two artifacts costs no second build."""
    art = manifest["artifacts"][0]
    twin = json.loads(json.dumps(art))
    rel = art["primary"].replace("fp32", "twin")
    shutil.copy(folder / art["primary"], folder / rel)
    twin["precision"], twin["primary"] = "fp16", rel
    twin["meta"] = {**twin["meta"], "precision": "fp16"}
    twin["files"] = [{"path": rel, "sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}]
    manifest["artifacts"].append(twin)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return rel


def test_verify_goes_on_past_a_failing_artifact(small_release, tmp_path):
    """Each way an artifact fails (a changed file, a file its runtime cannot open, a corrupt golden kit) is its
    own case, and the artifacts after it are still verified; progress names each artifact run."""
    folder, manifest = _copy(small_release, tmp_path / "a")
    twin = _twin(folder, manifest)
    first = manifest["artifacts"][0]["primary"]
    said: list[str] = []
    res = verify(folder, progress=said.append)
    assert res["passed"], res
    assert said == [f"verifying {KEY} ...", "verifying rfb-320 onnx/fp16/decoded ..."]
    assert next(c for c in res["cases"] if c["name"] == KEY)["parity"]["runtime"] == "onnxruntime"
    (folder / first).write_bytes(b"changed")  # hash not re-recorded
    said.clear()
    res = verify(folder, progress=said.append)
    arts = [(c["name"], c["passed"]) for c in res["cases"] if not c["name"].startswith("file ")]
    assert arts == [(KEY, False), ("rfb-320 onnx/fp16/decoded", True)]
    assert said == ["verifying rfb-320 onnx/fp16/decoded ..."]
    _rerecord(folder, manifest, first)  # now a file its runtime cannot open
    res = verify(folder)
    arts = [(c["name"], c["passed"]) for c in res["cases"] if not c["name"].startswith("file ")]
    assert arts == [(KEY, False), ("rfb-320 onnx/fp16/decoded", True)]
    assert next(c for c in res["cases"] if c["name"] == KEY)["failure"].startswith(f"{first}: ")
    (folder / "golden" / "rfb-320" / "boxes.npy").write_bytes(b"\x93NUMPY damaged")  # both artifacts' kit
    res = verify(folder)
    bad = {c["name"]: c["failure"] for c in res["cases"] if not c["passed"]}
    assert bad[KEY].startswith(f"{first}: ") or bad[KEY] == "golden kit of rfb-320 is corrupt"
    assert bad["rfb-320 onnx/fp16/decoded"] == "golden kit of rfb-320 is corrupt" and twin


def test_verify_names_what_a_runtime_leaves_out_and_refuses_an_export(small_release, tmp_path):
    folder, manifest = _copy(small_release, tmp_path / "b")
    _twin(folder, manifest)
    manifest["artifacts"][1]["target"] = "tflite"  # a file onnxruntime does not run: left out, by its key
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    res = verify(folder, runtime="onnxruntime")
    assert res["passed"] and res["left_out"] == ["rfb-320 tflite/fp16/decoded"]
    assert [c["name"] for c in res["cases"] if not c["name"].startswith("file ")] == [KEY]
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({"schema_version": 1, "model": {"id": "rfb-320"}, "artifacts": []}))
    with pytest.raises(ZooError) as e:
        verify(export)
    assert str(e.value) == f"{export} is not a `zoo release` folder; for `zoo export` folders use `zoo check`"


def test_the_golden_kit_holds_the_originals_outputs(tmp_path, resolved, monkeypatch):
    """The measuring stick of `zoo verify` measured: the golden kit written for rfb-320 holds exactly the
    outputs of the original project's own ONNX files (plain onnxruntime) on its photos, and the detections
    of those outputs; its photos are the built-in ones, byte for byte.

    Written with an empty reference cache, so PyTorch computes the outputs here (a warm cache would hide
    that path), and stored as the very entry an export of the same model and photos reads (one key); a
    stale photo already in the kit's folder is replaced."""
    from conftest import REFERENCE, ort_run
    from zoo.core.images import builtin_images, load_batch
    from zoo.core.model.processing import postprocess
    from zoo.pipeline.golden import write_golden
    from zoo.pipeline.reference import plan_references, read_reference

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    imgs = builtin_images()
    stale = tmp_path / "golden" / "images" / imgs[0].name
    stale.parent.mkdir(parents=True)
    stale.write_bytes(imgs[-1].read_bytes() + b"x")
    rm = resolved("rfb-320")
    rels = write_golden(tmp_path, rm)
    meta = rm.meta().with_(head="raw")
    (key, path), = plan_references(rm.checkpoint_sha256, rm.meta().to_dict(), ["raw"], [str(p) for p in imgs]).values()
    stored = read_reference(path, key, "raw", len(imgs), meta.prior_count, meta.num_classes)
    assert stored is not None, f"the kit's PyTorch outputs are not the cache entry {path} of key {key}"
    assert rels == [f"golden/images/{p.name}" for p in imgs] + [
        f"golden/rfb-320/{n}" for n in ("scores.npy", "boxes.npy", "locations.npy", "detections.json")]
    for p in imgs:
        assert (tmp_path / "golden" / "images" / p.name).read_bytes() == p.read_bytes()
    x, _, sizes = load_batch(imgs, 320, 240)  # load_batch itself is held to an independent reference (unit tier)
    scores, boxes = ort_run(REFERENCE / "onnx" / "version-RFB-320.onnx", x)
    raw_scores, locations = ort_run(REFERENCE / "onnx" / "version-RFB-320_simplified.onnx", x)
    kit = {n: np.load(tmp_path / "golden" / "rfb-320" / f"{n}.npy") for n in ("scores", "boxes", "locations")}
    assert all(a.dtype == np.float32 and a.shape[0] == len(imgs) for a in kit.values())
    np.testing.assert_allclose(kit["scores"], scores, atol=1e-5)
    np.testing.assert_allclose(kit["boxes"], boxes, atol=1e-5)
    np.testing.assert_allclose(kit["locations"], locations, atol=5e-5)  # the original folds BatchNorm its own way
    for n in ("scores", "boxes", "locations"):
        np.testing.assert_array_equal(stored[n], kit[n])
    text = (tmp_path / "golden" / "rfb-320" / "detections.json").read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2) + "\n"  # the kit's one text file: indented, for the people who read it
    assert (doc["model"], doc["score_threshold"], doc["iou_threshold"], doc["candidate_size"]) == ("rfb-320", 0.7, 0.3, 200)
    assert list(doc["detections"]) == [p.name for p in imgs]
    for i, p in enumerate(imgs):
        want = postprocess(scores[i], boxes[i], *sizes[i], ["BACKGROUND", "face"])
        got = doc["detections"][p.name]
        assert len(got) == len(want) >= 1
        for g, w in zip(got, want):
            assert g["label"] == "face" and g["score"] == pytest.approx(w.score, abs=1e-4)
            np.testing.assert_allclose(g["box"], w.box, atol=0.02)
    # written again over itself: the same bytes (the photos are not rewritten)
    before = {r: (tmp_path / r).read_bytes() for r in rels}
    assert write_golden(tmp_path, resolved("rfb-320")) == rels
    assert {r: (tmp_path / r).read_bytes() for r in rels} == before


def test_a_partial_pull_record_in_process(small_release, tmp_path):
    """What `zoo pull --target` leaves out (its pull.json) is reported, not failed; the record is input."""
    from zoo.core.manifest import read_manifest
    from zoo.pipeline.verify import PULL_RECORD, left_out_paths, pull_record_text

    text = pull_record_text("oci://h/r:t", "sha256:" + "a" * 64, ["mnn"], None, ["b", "a"])
    assert text.endswith("}\n") and json.loads(text) == {"source": "oci://h/r:t", "digest": "sha256:" + "a" * 64,
                                                         "targets": ["mnn"], "precisions": None, "left_out": ["a", "b"]}
    folder, manifest = _copy(small_release, tmp_path / "p")
    m = read_manifest(folder)
    assert left_out_paths(folder, m) == set()
    primary = manifest["artifacts"][0]["primary"]
    (folder / PULL_RECORD).write_text(pull_record_text("oci://h/r:t", "sha256:x", ["mnn"], None, [primary]))
    assert left_out_paths(folder, m) == {primary}
    # present although left out: still checked (and passes)
    res = verify(folder)
    assert res["passed"] and "partial" not in res and any(c["name"] == KEY for c in res["cases"])
    (folder / primary).unlink()
    res = verify(folder)
    assert res["passed"], res["cases"]
    assert res["partial"] == {"record": PULL_RECORD, "left_out": [KEY], "left_out_files": []}  # (files of no artifact)
    assert not any(c["name"] == KEY for c in res["cases"])
    # a missing file the record does not leave out fails
    (folder / "golden" / "rfb-320" / "scores.npy").unlink()
    res = verify(folder)
    bad = [c["name"] for c in res["cases"] if not c["passed"]]
    assert bad == ["file golden/rfb-320/scores.npy"], bad
    # the record is input: damaged, not a list, naming a path the manifest does not list
    for body, needle in (("{not json", "not JSON"), ('{"left_out": "x"}', "must be a list"),
                         ('{"left_out": [1]}', "must be a list"), ('[]', "must be a list"),
                         ('{"left_out": ["nope/x.onnx"]}', "'nope/x.onnx'")):
        (folder / PULL_RECORD).write_text(body)
        with pytest.raises(ZooError, match=needle) as e:
            left_out_paths(folder, m)
        assert PULL_RECORD in str(e.value)
    (folder / PULL_RECORD).write_text("{not json")
    with pytest.raises(ZooError) as e:
        left_out_paths(folder, m)
    assert str(e.value) == f"{folder / PULL_RECORD}: unreadable or not JSON (JSONDecodeError)"
    # a runtime none of the artifacts has: one line naming those there are
    with pytest.raises(ZooError, match="no artifact here runs in 'mnn'"):
        verify(small_release, runtime="mnn")


def test_a_left_out_release_file_is_skipped_and_the_rest_checked(small_release, tmp_path, monkeypatch):
    from zoo.core.manifest import read_manifest
    from zoo.pipeline.verify import PULL_RECORD, left_out_paths, pull_record_text

    folder, manifest = _copy(small_release, tmp_path / "p")
    first = manifest["files"][0]["path"]
    (folder / PULL_RECORD).write_text(pull_record_text("oci://h/r:t", "sha256:x", ["onnx"], None, [first]))
    (folder / first).unlink()
    res = verify(folder)
    files = [c["name"] for c in res["cases"] if c["name"].startswith("file ")]
    assert files == [f"file {f['path']}" for f in manifest["files"][1:]]  # the one left out, and only it, unchecked
    assert res["partial"]["left_out_files"] == [first]

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    m = read_manifest(folder)
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ZooError) as e:
        left_out_paths(folder, m)
    assert str(e.value) == f"{folder / PULL_RECORD}: unreadable or not JSON (Permission denied)"


def test_an_artifact_its_runtime_cannot_open_fails_verify_naming_it(small_release, tmp_path):
    """A file whose hash was re-recorded but that its runtime cannot load: the golden worker fails, and that is a
    failing case naming the file and the runtime's reason (issue 40: the mutation run found no fast test of it)."""
    from zoo.pipeline.verify import verify

    folder, manifest = _copy(small_release, tmp_path)
    rel = "onnx/rfb-320-decoded-fp32.onnx"
    (folder / rel).write_bytes(b"not an onnx model")
    _rerecord(folder, manifest, rel)
    res = verify(folder)
    golden = [c for c in res["cases"] if not c["name"].startswith("file ")]
    assert not res["passed"] and [(c["name"], c["passed"]) for c in golden] == [("rfb-320 onnx/fp32/decoded", False)]
    assert golden[0]["failure"].startswith(f"{rel}: ") and len(golden[0]["failure"]) > len(rel) + 10, golden[0]
    assert all(c["passed"] for c in res["cases"] if c["name"].startswith("file "))  # the hashes hold: the file is the trouble
    cp = zoo("verify", folder)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr, cp.stderr
    assert f"FAIL  rfb-320 onnx/fp32/decoded: {rel}: onnxruntime cannot load" in cp.stdout, cp.stdout
