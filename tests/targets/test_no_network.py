"""Exports never touch the network or run pip (every process of the run is audited)."""
from __future__ import annotations

import json
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


def test_web_runtimes_make_no_connection(export_dir, halves, tmp_path):
    """`zoo check` of rfb-320's ONNX files in ort-web (onnxruntime-web loading its WebAssembly in the Node
    worker), every process audited. The tfjs-wasm worker is audited by the tfjs export below (its parity runs
    there); tfjs-cpu loads nothing more. The export is the matrix's (not audited: the check is what is), and so
    are the photos (its gate half: the PyTorch reference comes from the session's cache)."""
    if get_target("onnx").runtime_problem("ort-web"):
        pytest.skip("the ort-web runtime is not installed")
    folder, manifest, cp = export_dir("rfb-320", "onnx", ",".join(get_target("onnx").precisions))
    assert manifest is not None, cp.stderr[-2000:]
    log = tmp_path / "events.log"
    cp = zoo("check", folder, "--images", halves["B"], "--runtime", "ort-web", "--min-evidence", "100", "--json",
             env=audited_env(log))
    assert not log.exists() or not log.read_text(), log.read_text()
    res = json.loads(cp.stdout)  # every file ran in ort-web (their verdicts are the matrix's to judge)
    assert res["runtime"] == "ort-web" and len(res["results"]) == len(manifest["artifacts"]), cp.stderr[-2000:]
    assert all("parity" in r for r in res["results"]), res["results"]


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
