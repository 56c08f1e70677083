"""The toolchain lock (zoo/core/data/constraints.txt): the installed versions equal it, it agrees with the
compat matrix, and `zoo export` / `zoo release` warn in one line when a package in use differs from it."""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from zoo.core.errors import ZooError
from zoo.core.toolchain import LOCK_PATH, canonical, drift, drift_line, parse_lock, read_lock
from zoo.pipeline.compat_env import load_matrix
from zoo.pipeline.plan import tools_in_use

ROOT = Path(__file__).resolve().parents[2]


def _closure(dist: str, extras: set[str]) -> dict[str, str]:
    """Every distribution ``dist[extras]`` needs, recursively, as installed: {canonical name: version}."""
    out: dict[str, str] = {}
    todo = [(dist, frozenset(extras))]
    seen = set()
    while todo:
        name, ex = todo.pop()
        if (canonical(name), ex) in seen:
            continue
        seen.add((canonical(name), ex))
        d = md.distribution(name)
        out[canonical(d.metadata["Name"])] = d.version
        for raw in d.requires or []:
            req = Requirement(raw)
            envs = [dict(default_environment(), extra=e) for e in (ex or {""})]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return out


def test_every_package_the_project_needs_is_installed_at_the_locked_version():
    lock = read_lock()
    need = _closure("ultraface-zoo", {"all", "test"})
    need.pop("ultraface-zoo")
    need["torch"] = md.version("torch")
    unpinned = sorted(n for n in need if n not in lock)
    assert not unpinned, f"installed for ultraface-zoo[all,test] but not in {LOCK_PATH.name}: {unpinned}"
    differ = [(n, v, lock[n]) for n, v in sorted(need.items()) if v.split("+")[0] != lock[n]]
    assert not differ, f"installed versions differ from the lock (run scripts/install.sh): {differ}"
    for tool in ("torch", "onnx", "onnxsim", "onnxruntime", "mnn", "ncnn", "pnnx", "tensorflow-cpu",
                 "ai-edge-litert", "opencv-python-headless", "openvino", "nncf", "pip", "setuptools"):
        assert tool in lock, f"{tool} is not pinned"


def test_the_lock_agrees_with_the_compat_matrix():
    """Wherever the matrix names versions of a runtime's package that the lock pins, the locked version is
    one of its default versions: what the exporter is proven with is what `zoo compat` tests."""
    lock, m, checked = read_lock(), load_matrix(), []
    for name, rt in m.runtimes.items():
        pinned = lock.get(canonical(rt["package"]))
        versions = [v for v in rt["versions"] if canonical(v["package"]) == canonical(rt["package"])]
        if pinned is None or not versions:
            continue
        defaults = [v["version"] for v in versions if v["default"]]
        assert pinned in defaults, f"{name}: the lock pins {rt['package']}=={pinned}, the matrix's defaults are {defaults}"
        checked.append(name)
    assert {"onnxruntime", "mnn", "ncnn", "litert", "opencv", "openvino"} <= set(checked), checked


def test_tools_in_use_are_what_the_manifest_records_and_equal_the_lock_here():
    used = tools_in_use(["onnx", "mnn", "ncnn", "tflite", "caffe", "openvino"])
    assert {"torch", "onnx", "onnxruntime", "MNN", "ncnn", "pnnx", "openvino", "nncf"} <= set(used)
    assert drift(used) == [], drift(used)
    assert drift_line(used) is None


@pytest.mark.parametrize("text, needle", [
    ("torch>=2\n", "expected 'name==version'"),
    ("torch==2.13.0\nTorch==2.13.0\n", "pinned twice"),
    ("-e .\n", "expected"),
])
def test_a_bad_lock_is_one_line(text, needle):
    with pytest.raises(ZooError, match=needle):
        parse_lock(text)


def test_drift_compares_public_versions_and_names_as_pip_does():
    lock = parse_lock("# c\ntorch==2.13.0\nai-edge-litert==2.3.0\nMNN==3.6.1\n")
    assert drift({"torch": "2.13.0+cpu", "ai_edge.litert": "2.3.0", "mnn": "3.6.1", "other": "1"}, lock) == []
    assert drift({"MNN": "3.5.0", "torch": "2.14.1+cpu"}, lock) == [("MNN", "3.5.0", "3.6.1"), ("torch", "2.14.1+cpu", "2.13.0")]
    line = drift_line({"MNN": "3.5.0", "torch": "2.14.1"}, lock)
    assert line.count("\n") == 0 and line.startswith("warning: ") and "MNN 3.5.0 (lock 3.6.1)" in line and "torch" in line


def _lock_with(tmp_path: Path, package: str, version: str) -> Path:
    text = LOCK_PATH.read_text()
    text, n = re.subn(rf"(?im)^{re.escape(package)}==.*$", f"{package}=={version}", text)
    assert n == 1
    p = tmp_path / "constraints.txt"
    p.write_text(text)
    return p


@pytest.mark.parametrize("argv", [
    ["export", "--model", "no-such-model", "--to", "onnx,mnn"],
    ["release", "--models", "no-such-model", "--targets", "onnx,mnn", "--out", "OUT"],
])
def test_export_and_release_warn_in_one_line_when_the_toolchain_differs(tmp_path, argv):
    """The warning comes before any work (here: before the unknown model stops the run, exit 1)."""
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "ZOO_TOOLCHAIN_LOCK"}
    same = subprocess.run([sys.executable, "-m", "zoo", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert same.returncode == 1 and "warning" not in same.stderr, same.stderr
    env["ZOO_TOOLCHAIN_LOCK"] = str(_lock_with(tmp_path, "MNN", "3.0.0"))
    cp = subprocess.run([sys.executable, "-m", "zoo", *argv], capture_output=True, text=True, env=env,
                        cwd=tmp_path, timeout=120)
    assert cp.returncode == 1, cp.stderr
    warnings = [l for l in cp.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1, cp.stderr
    assert f"MNN {md.version('MNN')} (lock 3.0.0)" in warnings[0], warnings
    assert "Traceback" not in cp.stderr


def test_the_lock_is_what_update_lock_writes_from_this_environment():
    cp = subprocess.run([sys.executable, str(ROOT / "scripts" / "update_lock.py"), "--check"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
