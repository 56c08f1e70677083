"""Issue 9: `zoo release`, `zoo verify`, shards, JUnit, and contained faults (each injected for real)."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import IMAGES, ROOT, assert_clean_error, zoo

PLUGINS = {
    "ZOO_TARGET_PLUGINS": "crash=fault_targets:CrashTarget,hang=fault_targets:HangTarget,"
    "missing=fault_targets:MissingTarget,slowonnx=fault_targets:SlowOnnxTarget",
}


def plugin_env(**extra) -> dict:
    env = dict(PLUGINS)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "pipeline")])
    env.update(extra)
    return env


def all_hashes(folder: Path) -> dict[str, str]:
    from zoo.core.fsutil import sha256_file

    # REPORT.md and REPORT.html are derived views (not in the manifest) that name their folder: left out
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name not in ("REPORT.md", "REPORT.html")}


@pytest.fixture(scope="module")
def small_release(tmp_path_factory):
    """Two models x (onnx, caffe, ...) x fp32, built twice into two folders (--jobs 2: the models side by
    side; --jobs 1), plus a resumed run."""
    from zoo.exporters import get_target

    targets = ["onnx", "caffe"] + [t for t in ("mnn", "ncnn", "tflite") if _registered(t) and get_target(t).available()]
    a, b = tmp_path_factory.mktemp("rel-a"), tmp_path_factory.mktemp("rel-b")
    args = ["release", "--models", "rfb-320,slim-320", "--targets", ",".join(targets), "--precisions", "fp32"]
    t0 = time.time()
    cp_a = zoo(*args, "--out", a, "--junit", a.parent / "rel-a.xml", "--jobs", "2", check=0)
    build_s = time.time() - t0
    zoo(*args, "--out", b, "--jobs", "1", check=0)  # one job at a time: the models one after another
    t0 = time.time()
    cp_resume = zoo(*args, "--out", a, check=0)
    return {"a": a, "b": b, "targets": targets, "cp_a": cp_a, "cp_resume": cp_resume, "build_s": build_s,
            "resume_s": time.time() - t0, "junit": a.parent / "rel-a.xml"}


def _registered(name: str) -> bool:
    from zoo.exporters import target_names

    return name in target_names()


def test_release_layout_and_manifest(small_release):
    a = small_release["a"]
    m = json.loads((a / "manifest.json").read_text())
    assert m["release"]["models"] == ["rfb-320", "slim-320"]
    assert set(m["models"]) == {"rfb-320", "slim-320"}
    assert not m["failed"]
    combos = {(x["model"], x["target"]) for x in m["artifacts"]}
    assert combos == {(mid, t) for mid in ("rfb-320", "slim-320") for t in small_release["targets"]}
    for x in m["artifacts"]:
        assert x["parity"]["passed"]
        ev = x["parity"]["evidence"]  # the default parity set: the 16 pinned photos (ZOO_IMAGES_DIR in the tests)
        assert ev["images"] == 16 and ev["faces"] >= 250 and ev["strong"]
        assert x["lineage"]["checkpoint_sha256"] == m["models"][x["model"]]["checkpoint_sha256"]
        if x["target"] != "onnx" and x["target"] != "tflite":
            assert len(x["lineage"]["onnx_sha256"]) == 64
    for mid in ("rfb-320", "slim-320"):
        card = (a / "cards" / f"{mid}.md").read_text()
        assert "Published accuracy" in card and "BACKGROUND, face" in card and "MIT" in card
        det = json.loads((a / "golden" / mid / "detections.json").read_text())
        assert sum(len(v) for v in det["detections"].values()) >= 3  # one face per golden photo at least
    assert "Parity" in (a / "REPORT.md").read_text() or "parity" in (a / "REPORT.md").read_text()
    page = (a / "REPORT.html").read_text()
    assert page.count("<span class=\"v pass\">PASS</span>") >= 2 * len(m["artifacts"])  # summary row + section
    paths = {f["path"] for f in m["files"]}
    assert {"golden/images/astronaut.jpg", "cards/rfb-320.md", "golden/rfb-320/scores.npy"} <= paths
    junit = ET.parse(small_release["junit"]).getroot()
    assert junit.get("failures") == "0" and int(junit.get("tests")) == len(m["artifacts"])


def test_two_releases_are_byte_identical_whatever_the_jobs(small_release):
    ha, hb = all_hashes(small_release["a"]), all_hashes(small_release["b"])
    assert ha == hb


def test_resume_rebuilds_nothing(small_release):
    cp = small_release["cp_resume"]
    assert "exporting" not in cp.stderr and "up to date" in cp.stderr
    assert small_release["resume_s"] < small_release["build_s"]


def test_verify_passes_then_names_a_flipped_byte(small_release, tmp_path):
    import shutil

    a = small_release["a"]
    cp = zoo("verify", a, "--junit", tmp_path / "v.xml", check=0)
    assert "FAIL" not in cp.stdout
    # the evidence the golden kit gave (the 3 golden photos): reported, never a weak-evidence exit
    lines = [l for l in cp.stdout.splitlines() if l.startswith("PASS") and not l.startswith("PASS  file ")]
    assert lines and all("evidence 3 img 3 faces (<16px 0, 16-64px 0, >64px 3)" in l for l in lines)
    assert "weak evidence" not in cp.stdout
    assert ET.parse(tmp_path / "v.xml").getroot().get("failures") == "0"
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    m = json.loads((copy / "manifest.json").read_text())
    victim = next(x for x in m["artifacts"] if x["target"] == ("mnn" if "mnn" in small_release["targets"] else "caffe"))
    path = copy / [f["path"] for f in victim["files"] if not f["path"].endswith(".json")][-1]
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))
    cp = zoo("verify", copy, "--junit", tmp_path / "v2.xml")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert str(path.relative_to(copy)) in cp.stderr
    assert ET.parse(tmp_path / "v2.xml").getroot().get("failures") == "1"


def test_shards_merge_to_the_unsharded_manifest(small_release, tmp_path):
    targets = ",".join(small_release["targets"])
    args = ["release", "--models", "rfb-320,slim-320", "--targets", targets, "--precisions", "fp32"]
    zoo(*args, "--shard", "1/2", "--out", tmp_path / "s1", check=0)
    zoo(*args, "--shard", "2/2", "--out", tmp_path / "s2", check=0)
    s1 = json.loads((tmp_path / "s1" / "manifest.json").read_text())
    s2 = json.loads((tmp_path / "s2" / "manifest.json").read_text())
    assert s1["artifacts"] and s2["artifacts"]
    assert not {(x["model"], x["target"]) for x in s1["artifacts"]} & {(x["model"], x["target"]) for x in s2["artifacts"]}
    zoo("release", "--merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "merged", check=0)
    assert (tmp_path / "merged" / "manifest.json").read_bytes() == (small_release["a"] / "manifest.json").read_bytes()
    assert all_hashes(tmp_path / "merged") == all_hashes(small_release["a"])


def test_bad_shard_and_merge_input(tmp_path):
    assert_clean_error(zoo("release", "--out", tmp_path / "x", "--models", "rfb-320", "--shard", "3/2"), "--shard")
    assert_clean_error(zoo("release", "--out", tmp_path / "x", "--merge", tmp_path / "nope"), "no manifest.json")


# ----------------------------------------------------------------------------- faults

def test_crash_hang_missing_fail_alone(tmp_path):
    out = tmp_path / "rel"
    cp = zoo("release", "--out", out, "--models", "slim-320", "--targets", "onnx,crash,hang,missing",
             "--precisions", "fp32", env=plugin_env())
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [(x["target"], x["parity"]["passed"]) for x in m["artifacts"]] == [("onnx", True)]
    reasons = {f["target"]: f["error"] for f in m["failed"]}
    assert "SIGSEGV" in reasons["crash"] and "timed out" in reasons["hang"] and "pip install" in reasons["missing"]
    assert not list(out.glob("crash")) and not list(out.glob("hang")) and not list(out.glob(".zoo-work-*"))


def _start_slow_release(out: Path, seconds: float) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(plugin_env(ZOO_TEST_SLOW_SECONDS=str(seconds)))
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", "release", "--out", str(out), "--models", "slim-320", "--targets", "onnx,slowonnx",
         "--precisions", "fp32", "--images", str(IMAGES)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(pred, timeout=300.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.3)
    return False


def _onnx_landed(out: Path) -> bool:
    try:
        m = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return any(a["target"] == "onnx" for a in m.get("artifacts", []))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_release_leaves_nothing_valid_looking_and_resumes(tmp_path, sig):
    out = tmp_path / "rel"
    proc = _start_slow_release(out, 120)
    try:
        assert _wait_for(lambda: _onnx_landed(out) and list(out.glob(".zoo-work-*/out/*/*.partial"))), "release did not reach the slow target"
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert proc.returncode != 0
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
        assert not list(out.glob(".zoo-work-*")), "work folder left behind"
    # nothing outside the private work folder looks like a slowonnx artifact
    assert not (out / "slowonnx").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert [a["target"] for a in m["artifacts"]] == ["onnx"]
    # the next run resumes: ONNX is not rebuilt, the slow target is, stale work is cleaned
    cp = zoo("release", "--out", out, "--models", "slim-320", "--targets", "onnx,slowonnx", "--precisions", "fp32",
             "--images", IMAGES, env=plugin_env(ZOO_TEST_SLOW_SECONDS="0"), check=0)
    assert "onnx/fp32/decoded is up to date" in cp.stderr and "exporting slowonnx" in cp.stderr
    assert not list(out.glob(".zoo-work-*"))
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(a["target"] for a in m["artifacts"]) == ["onnx", "slowonnx"]
    zoo("verify", out, env=plugin_env(), check=0)


def test_second_release_into_same_folder_is_refused(tmp_path):
    out = tmp_path / "rel"
    proc = _start_slow_release(out, 120)
    try:
        assert _wait_for(lambda: (out / ".zoo-release.lock").is_file() and (out / ".zoo-release.lock").read_text().strip())
        cp = zoo("release", "--out", out, "--models", "slim-320", "--targets", "onnx", "--precisions", "fp32", env=plugin_env())
        assert_clean_error(cp, "another `zoo release` is writing", str(proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_write_failure_file_too_large_is_reported(tmp_path):
    """Files over RLIMIT_FSIZE fail with EFBIG, as a full quota would: reported, never silent."""
    out = tmp_path / "rel"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    cp = subprocess.run([sys.executable, "-m", "zoo", "export", "--model", "slim-320", "--to", "onnx", "--out", str(out)],
                        env=env, cwd=ROOT, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=600)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert not m["artifacts"] and "File too large" in m["failed"][0]["error"]
    assert not (out / "onnx").exists()


def test_disk_full_is_reported(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): the EFBIG test covers failing writes")
    try:
        cp = zoo("export", "--model", "slim-320", "--to", "onnx", "--out", mnt / "rel")
        assert cp.returncode in (1, 2) and "Traceback" not in cp.stderr
        text = cp.stderr + ((mnt / "rel" / "manifest.json").read_text() if (mnt / "rel" / "manifest.json").is_file() else "")
        assert "No space left" in text or "no space left" in text
        assert not (mnt / "rel" / "onnx").exists() or not list((mnt / "rel" / "onnx").iterdir())
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_read_only_folder_is_reported():
    assert_clean_error(zoo("release", "--out", "/sys/zoo-release-here", "--models", "slim-320", "--targets", "onnx",
                           "--precisions", "fp32"), "cannot write")
