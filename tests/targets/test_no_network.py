"""Exports never touch the network or run pip (every process of the run is audited)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import IMAGES, ROOT, assert_built, zoo
from zoo.exporters import get_target, target_names

NONET = ROOT / "tests" / "targets" / "nonet"


def audited_env(log) -> dict:
    return {"ZOO_NONET_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(NONET), str(ROOT)])}


def test_the_audit_hook_catches_connect_and_pip(tmp_path):
    log = tmp_path / "events.log"
    env = dict(os.environ, **audited_env(log))
    code = "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept Exception: pass\n" \
           "import subprocess\ntry:\n subprocess.run(['pip', '--version'])\nexcept Exception: pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    text = log.read_text()
    assert "socket.getaddrinfo" in text or "socket.connect" in text
    assert "subprocess.Popen" in text and "pip --version" in text


@pytest.mark.parametrize("target", [t for t in target_names() if t != "caffe"])
def test_export_makes_no_connection_and_runs_no_pip(target, tmp_path):
    t = get_target(target)
    if not t.available():
        pytest.skip(f"{target} runtime not installed")
    log = tmp_path / "events.log"
    precisions = ",".join(p for p in t.precisions)
    cp = zoo("export", "--model", "slim-320", "--to", target, "--precision", precisions, "--out", tmp_path / "out",
             "--images", IMAGES, env=audited_env(log))  # int8: the default calibration material
    out = tmp_path / "out" / "manifest.json"
    assert_built(json.loads(out.read_text()) if out.is_file() else None, cp)
    assert not log.exists() or not log.read_text(), log.read_text()
