"""Issue 32: the typed Python API (zoo.export, zoo.check, zoo.verify, zoo.load, ...) on a real checkpoint
and real runtimes, and `--runtime` as a comma list (check, verify, bench)."""
from __future__ import annotations

import dataclasses
import doctest
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import HALVES, IMAGES, ROOT, assert_clean_error, zoo

import zoo as zoo_api


@pytest.fixture(scope="module")
def api_export(tmp_path_factory, halves):
    """One fp32 ONNX export of slim-320 through the API (~8 s), gated on half B of the photos."""
    out = tmp_path_factory.mktemp("api-export")
    return zoo_api.export("slim-320", to=["onnx"], precision="fp32", out=out, images=halves["B"], jobs=1)


def test_import_zoo_is_light():
    """`import zoo` loads no runtime, no torch, no CLI framework; the API module only on first use, and even
    then none of the heavy layers."""
    code = ("import sys, zoo\n"
            "heavy = ('torch', 'typer', 'onnxruntime', 'cv2', 'MNN', 'ncnn', 'tensorflow', 'openvino', 'numpy', 'zoo.api')\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
            "zoo.export, zoo.load, zoo.ExportResult\n"
            "print(json.dumps([m for m in heavy[:-2] if m in sys.modules]))\n")
    cp = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, cwd=ROOT,
                        timeout=120, check=True)
    before, after = (json.loads(l) for l in cp.stdout.splitlines())
    assert before == [] and after == [], cp.stdout
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        zoo_api.nothing  # noqa: B018


def test_export_result_is_typed_and_passes(api_export, capfd):
    r = api_export
    assert r.passed and not r.failed
    assert r.manifest.is_file() and json.loads(r.manifest.read_text())["artifacts"]
    (a,) = r.artifacts
    assert a.path.is_file() and a.path.suffix == ".onnx" and a.path.parent.parent == r.out
    assert (a.target, a.precision, a.key) == ("onnx", "fp32", f"onnx/fp32/{a.head}")
    p = a.parity
    assert p.passed and p.failures == ()
    # the verdict's counts and evidence, as the manifest records them
    recorded = next(x for x in json.loads(r.manifest.read_text())["artifacts"] if x["target"] == "onnx")["parity"]
    assert p.detections.reference == recorded["detections"]["reference"] > 50
    assert p.detections.matched == p.detections.reference and p.detections.extra == 0
    assert p.detections.strict["matched"] == recorded["detections"]["strict"]["matched"]
    assert p.evidence.images == len(HALVES["B"]) and p.evidence.faces == p.detections.reference
    assert max(p.max_abs.values()) < 1e-3
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.path = a.path  # type: ignore[misc]
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the API prints nothing


def test_api_errors_raise_zooerror_and_print_nothing(tmp_path, capfd):
    with pytest.raises(zoo_api.ZooError, match="unknown target 'onnxx'.*did you mean 'onnx'"):
        zoo_api.export("slim-320", to="onnxx", out=tmp_path / "x")
    with pytest.raises(zoo_api.ZooError, match="unknown model"):
        zoo_api.export("slim-999", to="onnx", out=tmp_path / "x")
    with pytest.raises(zoo_api.ZooError):
        zoo_api.load(tmp_path / "missing.onnx")
    with pytest.raises(zoo_api.ZooError, match="unknown runtime 'opencvv'.*did you mean 'opencv'"):
        zoo_api.check(tmp_path, runtime="onnxruntime,opencvv")
    assert not (tmp_path / "x").exists()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_load_detects_as_zoo_detect_artifact(api_export):
    """zoo.load(...).detect gives the detections `zoo detect --artifact` prints, for a path, an array and a list."""
    path = api_export.artifacts[0].path
    photos = sorted(IMAGES.glob("*.jpg"))
    cp = zoo("detect", *photos, "--artifact", path, "--json", check=0)
    want = [[(d["label"], round(d["score"], 5), [round(v, 2) for v in d["box"]]) for d in r["detections"]]
            for r in json.loads(cp.stdout)["results"]]
    assert sum(map(len, want)) > 5

    def simple(dets):
        return [(d.label, round(d.score, 5), [round(v, 2) for v in d.box]) for d in dets]

    with zoo_api.load(path) as det:
        assert det.runtime == "onnxruntime"
        by_path = [simple(det.detect(p)) for p in photos[:3]]
        by_array = simple(det.detect(cv2.imread(str(photos[0]))))
        by_list = [simple(d) for d in det.detect([str(p) for p in photos])]
        with pytest.raises(zoo_api.ZooError, match="HxWx3 BGR uint8"):
            det.detect(np.zeros((10, 10), np.float32))
    assert by_path == want[:3] and by_list == want and by_array == want[0]
    d = zoo_api.load(path, runtime="opencv").detect(photos[0])
    assert isinstance(d[0], zoo_api.Detection) and len(d) == len(want[0])


def test_check_api_runs_each_artifact_per_runtime(api_export, halves):
    r = zoo_api.check(api_export.out, images=halves["B"], runtime="onnxruntime,opencv")
    assert r.passed and r.file_problems == ()
    assert [(i.artifact, i.runtime) for i in r.items] == [("onnx/fp32/decoded", "onnxruntime"), ("onnx/fp32/decoded", "opencv")]
    assert all(i.parity is not None and i.parity.passed and i.path.is_file() for i in r.items)
    assert r.raw["runtimes"] == ["onnxruntime", "opencv"] and r.raw["left_out"] == {"onnxruntime": [], "opencv": []}


def test_check_cli_runtime_list(api_export, halves):
    folder, few = api_export.out, ("--images", halves["B"])
    cp = zoo("check", folder, *few, "--runtime", "onnxruntime,opencv", "--json", check=0)
    res = json.loads(cp.stdout)
    assert [(r["artifact"], r["runtime"], r["passed"]) for r in res["results"]] == [
        ("onnx/fp32/decoded", "onnxruntime", True), ("onnx/fp32/decoded", "opencv", True)]
    assert res["passed"] and res["runtimes"] == ["onnxruntime", "opencv"]
    cp = zoo("check", folder, *few, "--runtime", "opencv,onnxruntime", check=0)
    lines = cp.stdout.splitlines()
    assert lines[0].startswith("runtime opencv: 1 artifact(s)") and lines[1].startswith("PASS  onnx/fp32/decoded")
    assert lines[2].startswith("runtime onnxruntime: 1 artifact(s)") and lines[3].startswith("PASS  onnx/fp32/decoded")
    # one runtime: the shape and lines of before (a string, not a list)
    res = json.loads(zoo("check", folder, *few, "--runtime", "opencv", "--json", check=0).stdout)
    assert res["runtime"] == "opencv" and res["left_out"] == [] and "runtimes" not in res
    # an unknown name in the list: one line suggesting the nearest, exit 1, before any work
    assert_clean_error(zoo("check", folder, "--runtime", "onnxruntime,opencvv"), "unknown runtime 'opencvv'",
                       "did you mean 'opencv'")
    assert_clean_error(zoo("check", folder, "--runtime", "mnn,ncnn"), "no artifact here runs in 'mnn', 'ncnn'")
    # detect and diff run one runtime: a list is one clear line
    assert_clean_error(zoo("detect", IMAGES / "1.jpg", "--artifact", api_export.artifacts[0].path,
                           "--runtime", "onnxruntime,opencv"), "runs one runtime")


def test_bench_cli_runtime_list(api_export):
    path = api_export.artifacts[0].path
    cp = zoo("bench", path, "--runtime", "onnxruntime,opencv", "--runs", "2", "--warmup", "0", "--rounds", "1",
             "--no-save", "--json", check=0)
    res = json.loads(cp.stdout)
    assert sorted(r["runtime"] for r in res["results"]) == ["onnxruntime", "opencv"]
    assert all(r["p50_ms"] > 0 for r in res["results"])
    assert_clean_error(zoo("bench", path, "--runtime", "onnxruntim"), "did you mean 'onnxruntime'")


def test_api_doctests():
    """The API's docstring examples run (and pass) in the suite."""
    import zoo.api

    res = doctest.testmod(zoo.api, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 2 and res.failed == 0


def test_diff_api_layer_by_layer(api_export, halves):
    (d,) = zoo_api.diff(api_export.artifacts[0].path, images=halves["B"])
    assert d.runtime == "onnxruntime" and d.artifact == api_export.artifacts[0].path
    assert len(d.raw["layers"]) > 10 and d.raw["first_divergent"] is None  # an fp32 file follows PyTorch everywhere
    with pytest.raises(zoo_api.ZooError, match="one runtime"):
        zoo_api.diff(api_export.artifacts[0].path, runtime="onnxruntime,opencv")
    # `zoo diff` is a thin caller of the same function: its --json is the API's raw result, layer for layer
    r = zoo("diff", str(api_export.artifacts[0].path), "--images", str(halves["B"]), "--json")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    assert [(l["torch"], l["runtime"], l["max_abs"]) for l in cli["layers"]] == \
        [(l["torch"], l["runtime"], l["max_abs"]) for l in d.raw["layers"]]
    assert {k: v for k, v in cli.items() if k != "seconds"} == {k: v for k, v in d.raw.items() if k != "seconds"}
    r = zoo("diff", str(api_export.artifacts[0].path), "--runtime", "onnxruntime,opencv")
    assert_clean_error(r, "this command runs one runtime")


def _marked(mark: str) -> list[int]:
    """The processes whose environment holds ``ZOO_TEST_MARK=mark`` (a caller and every worker it started)."""
    from pathlib import Path

    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if f"ZOO_TEST_MARK={mark}".encode() in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def test_an_interrupted_api_call_leaves_no_worker(tmp_path, halves):
    """KeyboardInterrupt (Ctrl-C in a notebook) during zoo.export: the workers it started end with the call,
    while the caller lives on (not only when it exits and their pipes close)."""
    import os
    import signal
    import uuid

    mark = uuid.uuid4().hex
    code = (f"import zoo\ntry:\n    zoo.export('rfb-320', to='onnx,tflite', precision='fp32,int8', out={str(tmp_path / 'x')!r}, "
            f"images={str(halves['B'])!r}, jobs=2)\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
            "import time; time.sleep(10)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "ZOO_TEST_MARK": mark},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_marked(mark)) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)  # the caller and at least one worker
        assert len(_marked(mark)) >= 2, "no worker started"
        time.sleep(1)
        p.send_signal(signal.SIGINT)
        assert p.stdout.readline().strip() == "interrupted", p.stderr.read()[-2000:]
        time.sleep(0.5)
        left = [pid for pid in _marked(mark) if pid != p.pid]  # the caller is alive, sleeping
        assert p.poll() is None
    finally:
        p.kill()
        p.communicate()
    for pid in _marked(mark):
        os.kill(pid, signal.SIGKILL)  # the test's own leftovers, if any
    assert left == [], f"workers left running while the caller lives: {left}"
