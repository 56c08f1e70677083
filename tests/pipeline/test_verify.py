"""`zoo verify` fails when it should: a release is re-proven against its golden kit, not against itself.

A small release (rfb-320, ONNX fp32, parity on three photos: ~20 s) is built once; each test changes a
copy. The hash checks alone cannot catch an artifact whose sha256 was re-recorded after it was changed:
only the golden kit's stored PyTorch outputs can, so these tests change one weight of a loadable file
and re-record every hash of it in the manifest.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, zoo
from zoo.core.fsutil import sha256_file

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def small_release(tmp_path_factory) -> Path:
    photos = tmp_path_factory.mktemp("verify-photos")
    for n in ("1.jpg", "2.jpg", "3.jpg"):
        (photos / n).symlink_to(IMAGES / n)
    out = tmp_path_factory.mktemp("verify-release")
    zoo("release", "--out", out, "--models", "rfb-320", "--targets", "onnx", "--precisions", "fp32",
        "--images", photos, "--jobs", "2", check=0)
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
