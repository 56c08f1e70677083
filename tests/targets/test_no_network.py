"""Exports never touch the network or run pip (every process of the run is audited)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import IMAGES, ROOT, zoo
from zoo.exporters import get_target, target_names

NONET = ROOT / "tests" / "targets" / "nonet"


def audited_env(log) -> dict:
    """Every Python process (sitecustomize.py) and every Node process (nonet.cjs: the web runtimes' worker)."""
    return {"ZOO_NONET_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(NONET), str(ROOT)]),
            "NODE_OPTIONS": f"--require={NONET / 'nonet.cjs'}"}


def test_the_audit_hook_catches_connect_and_pip(tmp_path):
    log = tmp_path / "events.log"
    env = dict(os.environ, **audited_env(log))
    code = "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept Exception: pass\n" \
           "import subprocess\ntry:\n subprocess.run(['pip', '--version'])\nexcept Exception: pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    text = log.read_text()
    assert "socket.getaddrinfo" in text or "socket.connect" in text
    assert "subprocess.Popen" in text and "pip --version" in text


def test_the_node_audit_catches_connect_dns_fetch_and_npm(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("no Node.js")
    log = tmp_path / "events.log"
    env = dict(os.environ, **audited_env(log))
    code = ("const net = require('net'); try { net.connect(9, '127.0.0.1'); } catch (e) {}\n"
            "try { require('dns').lookup('example.org', () => {}); } catch (e) {}\n"
            "fetch('http://127.0.0.1:9/').catch(() => {});\n"
            "try { require('child_process').spawnSync('npm', ['--version']); } catch (e) {}\n")
    subprocess.run(["node", "-e", code], env=env, check=True, timeout=60)
    text = log.read_text()
    for what in ("socket.connect", "dns.lookup", "fetch http://127.0.0.1:9/", "child_process.spawnSync npm"):
        assert what in text, text


def test_web_runtimes_make_no_connection(tmp_path):
    """`zoo check` of ONNX files in ort-web and of TF.js files in tfjs-wasm: the Node worker audited too."""
    if get_target("tfjs").runtime_problem("tfjs-wasm") or get_target("onnx").runtime_problem("ort-web"):
        pytest.skip("the web runtimes are not installed")
    log = tmp_path / "events.log"
    out = tmp_path / "out"
    zoo("export", "--model", "slim-320", "--to", "onnx,tfjs", "--precision", "fp32", "--out", out, "--images", IMAGES,
        env=audited_env(log), check=0)
    zoo("check", out, "--images", IMAGES, "--runtime", "ort-web", env=audited_env(log), check=0)
    assert (out / "manifest.json").is_file()
    assert not log.exists() or not log.read_text(), log.read_text()


@pytest.mark.parametrize("target", [t for t in target_names() if t != "caffe"])
def test_export_makes_no_connection_and_runs_no_pip(target, tmp_path):
    t = get_target(target)
    if not t.available():
        pytest.skip(f"{target} runtime not installed")
    log = tmp_path / "events.log"
    precisions = ",".join(p for p in t.precisions)
    cp = zoo("export", "--model", "slim-320", "--to", target, "--precision", precisions, "--out", tmp_path / "out",
             "--images", IMAGES, env=audited_env(log))  # int8: the default calibration material
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    assert not log.exists() or not log.read_text(), log.read_text()
