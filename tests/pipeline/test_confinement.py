"""Every path a manifest names stays inside its folder: a manifest naming `../x`, an absolute path or a
symlink out of the folder is refused, with one clear line and exit 1, by every command that reads one."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_error, zoo
from zoo.core.fsutil import sha256_file

HOSTILE = ["dotdot", "absolute", "symlink"]


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conf-release") / "rel"
    zoo("release", "--out", out, "--models", "rfb-320", "--targets", "onnx", "--precisions", "fp32", check=0)
    return out


def _outside(root: Path) -> Path:
    secret = root.parent / "secret" / "s.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("not part of any release\n")
    return secret


def hostile_copy(src: Path, dest: Path, kind: str) -> Path:
    """A copy of ``src`` whose manifest lists a file outside the folder, with that file's true sha256."""
    shutil.copytree(src, dest)
    secret = _outside(dest)
    if kind == "dotdot":
        rel, target = os.path.relpath(secret, dest), secret
    elif kind == "absolute":
        target = Path("/etc/hostname") if Path("/etc/hostname").is_file() else secret
        rel = str(target)
    else:
        os.symlink(secret.parent, dest / "link")
        rel, target = "link/s.txt", secret
    m = json.loads((dest / "manifest.json").read_text())
    entry = {"path": rel, "sha256": sha256_file(target), "bytes": target.stat().st_size}
    if "release" in m:
        m["files"].append(entry)  # a release's extra files (golden kit, cards)
    else:
        m["artifacts"][0]["files"].append(entry)  # an export's artifact companion
    (dest / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    return dest


@pytest.mark.parametrize("kind", HOSTILE)
def test_verify_refuses(release_dir, tmp_path, kind):
    bad = hostile_copy(release_dir, tmp_path / "r", kind)
    assert_clean_error(zoo("verify", bad), "refusing it" if kind != "symlink" else "outside")


@pytest.mark.parametrize("kind", HOSTILE)
def test_merge_refuses_and_writes_nothing_outside(release_dir, tmp_path, kind):
    bad = hostile_copy(release_dir, tmp_path / "r", kind)
    out = tmp_path / "merged"
    cp = zoo("release", "--merge", bad, release_dir, "--out", out)
    assert_clean_error(cp, "refusing it" if kind != "symlink" else "outside")
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (tmp_path / "secret").iterdir()) == ["s.txt"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_check_bench_report_refuse(export_dir, tmp_path, kind):
    folder, manifest, cp = export_dir("rfb-320", "onnx")
    assert cp.returncode == 0
    bad = hostile_copy(folder, tmp_path / "e", kind)
    needle = "refusing it" if kind != "symlink" else "outside"
    assert_clean_error(zoo("check", bad), needle)
    assert_clean_error(zoo("bench", bad, "--runs", "1", "--rounds", "1", "--warmup", "0", "--no-save"), needle)
    assert_clean_error(zoo("report", bad), needle)


def test_detect_artifact_refuses_a_manifest_pointing_outside(release_dir, tmp_path):
    """`detect --artifact` reads the folder's manifest when the file carries no metadata: that manifest is confined too."""
    bad = hostile_copy(release_dir, tmp_path / "r", "dotdot")
    primary = next(bad.glob("onnx/*.onnx"))
    plain = bad / "onnx" / "plain.onnx"  # same graph without its embedded metadata: the manifest is the only source
    import onnx

    model = onnx.load(str(primary))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    img = next(Path(__file__).resolve().parents[2].joinpath("zoo", "core", "data", "images").glob("*.jpg"))
    assert_clean_error(zoo("detect", img, "--artifact", plain), "refusing it")


@pytest.mark.parametrize("kind", HOSTILE)
def test_release_resume_and_export_refuse_a_hostile_manifest_in_out(release_dir, tmp_path, kind):
    """Resuming a release (or exporting into a folder) reads the manifest already there: it is input too."""
    bad = hostile_copy(release_dir, tmp_path / "r", kind)
    before = (bad / "manifest.json").read_bytes()
    needle = "refusing it" if kind != "symlink" else "outside"
    cp = zoo("release", "--out", bad, "--models", "rfb-320", "--targets", "onnx", "--precisions", "fp32")
    assert_clean_error(cp, needle, "remove it or choose another --out")
    cp = zoo("export", "--model", "rfb-320", "--to", "onnx", "--out", bad)
    assert_clean_error(cp, needle, "remove it or choose another --out")
    assert (bad / "manifest.json").read_bytes() == before  # left as it was
