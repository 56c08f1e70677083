"""Issue 19: `zoo compat` runs rfb-320's fp32 and int8 artifacts in real environments of two releases each
of onnxruntime, MNN and ncnn (created by pip, cached in $ZOO_COMPAT_DIR when it is set, else in a session
temp folder), and reports PASS / FAIL / cannot-load with the parity figures.

The artifacts are those the target tests export anyway (export_dir: no extra export). Cold, the six
environments take a few minutes of pip (downloads, or pip's own cache); warm, none is touched."""
from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, assert_clean_error, assert_int8_verdict, zoo

OLD = {"onnxruntime": "1.17.3", "mnn": "3.0.0", "ncnn": "1.0.20240410"}
NEW = {"onnxruntime": "1.32.0", "mnn": "3.6.1", "ncnn": "1.0.20261020"}
RUNTIMES = ",".join(f"{rt}=={v}" for d in (OLD, NEW) for rt, v in d.items())
NONET = ROOT / "tests" / "targets" / "nonet"


@pytest.fixture(scope="module")
def compat_run(export_dir, compat_cache, tmp_path_factory):
    """The fp32 and int8 artifacts of rfb-320 for onnx, mnn, ncnn in OLD and NEW; then the same run again."""
    prims = []
    folders = []
    for target in ("onnx", "mnn", "ncnn"):
        folder, manifest, cp = export_dir("rfb-320", target, "fp32,fp16,int8")
        failing = [a for a in manifest["artifacts"] if not a["parity"]["passed"]]
        assert cp.returncode == (2 if failing else 0) and not manifest["failed"], cp.stderr[-3000:]
        for a in failing:  # only an int8 verdict under the strict rule or the shift gate, honestly
            assert a["precision"].startswith("int8"), (a["precision"], a["parity"]["failures"])
            assert_int8_verdict(a, cp.stdout)
        folders.append(folder)
        prims += [folder / a["primary"] for a in manifest["artifacts"] if a["precision"] in ("fp32", "int8")]
    env = {"ZOO_COMPAT_DIR": str(compat_cache)}
    out = tmp_path_factory.mktemp("compat")
    t0 = time.monotonic()
    prep = zoo("compat", "--prepare", "--runtime", RUNTIMES, env=env, check=0, timeout=1800, installs=True)
    prepare_s = time.monotonic() - t0
    t0 = time.monotonic()
    cp = zoo("compat", *prims, "--runtime", RUNTIMES, "--json", "--junit", out / "compat.xml", env=env, check=0)
    run_s = time.monotonic() - t0
    print(f"\ncompat: prepare {prepare_s:.0f} s ({'cold' if 'creating' in prep.stderr else 'warm'}), run {run_s:.0f} s")
    return {"doc": json.loads(cp.stdout), "cp": cp, "prep": prep, "junit": out / "compat.xml", "folders": folders,
            "prims": prims, "env": env, "cache": compat_cache}


def _cells(doc: dict) -> dict:
    return {(c["target"], c["precision"], c["version"]): c for c in doc["results"]}


def test_table_every_artifact_in_both_releases_of_its_runtime(compat_run):
    """Our fp32 and int8 files load and pass their parity tier in the oldest and newest release of each
    runtime (ncnn 1.0.20240410 needed the runner's 3-D Mat fallback: its bindings lack batch_index)."""
    doc = compat_run["doc"]
    assert {c["precision"] for c in doc["results"]} == {"fp32", "int8"}
    assert len(doc["results"]) == 2 * len(compat_run["prims"]) == 12
    for c in doc["results"]:
        assert c["runtime"] == {"onnx": "onnxruntime", "mnn": "mnn", "ncnn": "ncnn"}[c["target"]]
        assert c["version"] in (OLD[c["runtime"]], NEW[c["runtime"]])
        # int8 may FAIL the strict rule of its tier (no margin) as at export, never by losing faces
        assert c["status"] == "PASS" or (c["precision"] == "int8" and c["status"] == "FAIL" and c["parity"]
                                         and all(f.startswith("detections:") for f in c["parity"]["failures"])), c
        assert c["parity"]["matched"] >= 0.99 * c["parity"]["reference"] > 0
        if c["precision"] == "fp32":
            assert c["parity"]["matched"] == c["parity"]["reference"]
            assert max(c["parity"]["max_abs"][k] for k in ("scores", "boxes")) < 1e-4
    assert all(e["state"] == "ready" for e in doc["environments"].values())
    assert "creating" not in compat_run["cp"].stderr  # --prepare made them all


def test_the_originals_int8_mnn_loads_in_mnn_3_0_but_not_3_6(compat_run, export_dir, tmp_path):
    """The issue's own example, for real: the original project's int8 .mnn (described by a sidecar we
    write) cannot load in MNN 3.6 ("Don't support type [EltwiseInt8]"); MNN 3.0 loads and runs it."""
    from zoo.exporters.base import write_sidecar
    from zoo.core.meta import ArtifactMeta

    src = SHARED / "upstream" / "reference" / "mnn" / "RFB-320-quant-KL-5792.mnn"
    (tmp_path / src.name).write_bytes(src.read_bytes())
    _, manifest, _ = export_dir("rfb-320", "mnn", "fp32,fp16,int8")
    ours = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    write_sidecar(tmp_path, Path(src.name), ArtifactMeta.from_dict({**ours["meta"], "io": {}}))
    cp = zoo("compat", tmp_path / src.name, "--runtime", f"mnn=={OLD['mnn']},mnn=={NEW['mnn']}", "--json",
             env=compat_run["env"], check=0)
    cells = {c["version"]: c for c in json.loads(cp.stdout)["results"]}
    assert cells[NEW["mnn"]]["status"] == "cannot-load"
    assert "EltwiseInt8" in cells[NEW["mnn"]]["message"]
    assert cells[OLD["mnn"]]["status"] in ("PASS", "FAIL") and cells[OLD["mnn"]]["parity"]["reference"] > 0
    saved = json.loads((tmp_path / "compat.json").read_text())
    runs_on = saved["summary"]["rfb-320 mnn/int8/raw"]["mnn"]
    assert [t["status"] for t in runs_on["tested"]][1] == "cannot-load"
    text = zoo("compat", tmp_path / src.name, "--runtime", f"mnn=={NEW['mnn']}", "--no-save", env=compat_run["env"], check=0)
    assert "cannot-load [1]" in text.stdout and "Don't support type [EltwiseInt8]" in text.stdout


def test_junit_compat_json_and_report(compat_run):
    doc = compat_run["doc"]
    root = ET.parse(compat_run["junit"]).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(doc["results"])
    bad = sum(1 for c in doc["results"] if c["status"] not in ("PASS", "unavailable"))
    assert int(root.find("testsuite").get("failures")) == bad
    for folder in compat_run["folders"]:
        saved = json.loads((folder / "compat.json").read_text())
        mine = {str(p.relative_to(folder)) for p in compat_run["prims"] if p.is_relative_to(folder)}
        assert {c["primary"] for c in saved["results"]} == mine
        assert saved["summary"]
        rep = zoo("report", folder, check=0).stdout
        assert "### Runtime compatibility" in rep and "runs on" in rep
    # compat.json is beside the manifest, not in it: the manifest does not list it
    m = json.loads((compat_run["folders"][0] / "manifest.json").read_text())
    assert "compat.json" not in json.dumps(m)


def test_warm_cache_runs_offline_and_creates_nothing(compat_run, tmp_path):
    """Second run: the cached environments, no pip and no network (sockets and pip refused)."""
    onnx_fp32 = next(p for p in compat_run["prims"] if p.suffix == ".onnx")
    env = {**compat_run["env"], "PYTHONPATH": f"{NONET}{os.pathsep}{ROOT}", "ZOO_NONET_LOG": str(tmp_path / "net.log")}
    t0 = time.monotonic()
    cp = zoo("compat", onnx_fp32, "--runtime", f"onnxruntime=={OLD['onnxruntime']}", "--no-save", env=env, check=0)
    print(f"\nwarm single run: {time.monotonic() - t0:.1f} s")
    assert "creating" not in cp.stderr
    assert "PASS" in cp.stdout
    assert not (tmp_path / "net.log").exists() or not (tmp_path / "net.log").read_text().strip()


def test_no_index_is_one_clear_line_and_unavailable_is_not_a_failure(compat_run, tmp_path):
    onnx_fp32 = next(p for p in compat_run["prims"] if p.suffix == ".onnx")
    empty = tmp_path / "envs"
    env = {"ZOO_COMPAT_DIR": str(empty), "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_CACHE_DIR": "1"}
    cp = zoo("compat", onnx_fp32, "--runtime", "onnxruntime==1.20.1", "--no-save", env=env, installs=True)
    assert_clean_error(cp, "cannot create the onnxruntime==1.20.1 environment", "cannot be reached")
    assert not [p for p in empty.iterdir() if not p.name.startswith(".")] if empty.exists() else True
    # a release with no wheel for this Python: reported as such, the run succeeds
    cp = zoo("compat", onnx_fp32, "--runtime", "onnxruntime==1.14.1", "--no-save", "--json",
             env={"ZOO_COMPAT_DIR": str(compat_run["cache"])}, check=0, installs=True)
    (c,) = json.loads(cp.stdout)["results"]
    assert c["status"] == "unavailable" and "not available for Python 3." in c["message"]


def test_min_runtime_mnn_export_is_proven_in_the_older_mnn(compat_run, export_dir, tmp_path):
    """Issue 19 (b): rfb-320 exported for MNN with --min-runtime mnn==3.0.0 (MNN's converter, --targetVersion
    3.0) sits beside the default build under its own key and names, says so in its metadata (the file's
    bizCode too), and `zoo compat` proves it in MNN 3.0.0. Measured, and kept honest here: with MNN 3.6.1's
    converter --targetVersion 3.0 changes nothing in this graph (the default files already run in 3.0.0),
    so the full-int8 file crashes MNN 3.4.1 exactly as the default one does (a 3.4.1 runtime bug, not a
    format the converter can avoid); 3.4.1 is tested beside the claim to show it."""
    from zoo.exporters.mnn.convert import read_biz_code
    from zoo.validation.compat import summarize

    folder, manifest, cp = export_dir("rfb-320", "mnn", "fp32,int8", extra=("--min-runtime", "mnn==3.0.0"))
    failing = [a for a in manifest["artifacts"] if not a["parity"]["passed"]]
    assert cp.returncode == (2 if failing else 0) and not manifest["failed"], cp.stderr[-3000:]
    for a in failing:  # only an int8 verdict under the strict rule or the shift gate, honestly
        assert a["precision"].startswith("int8"), (a["precision"], a["parity"]["failures"])
        assert_int8_verdict(a, cp.stdout)
    assert "for mnn==3.0.0" in cp.stdout
    arts = manifest["artifacts"]
    assert sorted(a["precision"] for a in arts) == ["fp32", "int8", "int8-weight"]
    for a in arts:
        assert a["min_runtime"] == "mnn==3.0.0" and a["primary"].endswith("-for-mnn3.0.0.mnn")
        assert a["meta"]["io"]["converter"] == {"targetVersion": "3.0"} and a["meta"]["io"]["min_runtime"] == "mnn==3.0.0"
        assert json.loads(read_biz_code(folder / a["primary"]))["io"]["min_runtime"] == "mnn==3.0.0"
    default_int8 = next(p for p in compat_run["prims"] if p.name == "rfb-320-raw-int8.mnn")
    versions = ("3.0.0", "3.4.1", NEW["mnn"])
    cp = zoo("compat", folder, default_int8, "--runtime", ",".join(f"mnn=={v}" for v in versions), "--json", "--no-save",
             env=compat_run["env"], check=0, installs=True)  # 3.4.1's environment is created here
    doc = json.loads(cp.stdout)
    cells = {(c["artifact"].split(" ", 1)[1], c["version"]): c for c in doc["results"]}
    for p in ("fp32", "int8", "int8-weight"):
        for v in ("3.0.0", NEW["mnn"]):
            c = cells[(f"mnn/{p}/raw@mnn3.0.0", v)]
            assert c["min_runtime"] == "mnn==3.0.0", c
            # int8 may FAIL its tier's strict rule (as at export), never by losing faces or not loading
            assert c["status"] == "PASS" or (p.startswith("int8") and c["status"] == "FAIL" and all(
                f.startswith("detections:") for f in c["parity"]["failures"])), c
    assert cells[("mnn/fp32/raw@mnn3.0.0", "3.4.1")]["status"] == "PASS"
    # the targeted int8 fares in 3.4.1 exactly as the default one: the option does not change the file's graph
    assert cells[("mnn/int8/raw@mnn3.0.0", "3.4.1")]["status"] == cells[("mnn/int8/raw", "3.4.1")]["status"]
    s = summarize(doc["results"])  # (--no-save: the document is not written, so it carries no summary)
    int8 = s[next(k for k in s if k.endswith("mnn/int8/raw@mnn3.0.0"))]["mnn"]
    assert int8["built_for"] == "mnn==3.0.0"
    assert int8["built_for_holds"] is (cells[("mnn/int8/raw@mnn3.0.0", "3.4.1")]["status"] == "PASS")
    print("\nmin-runtime: " + "; ".join(f"{k} {v}: {c['status']}" for (k, v), c in sorted(cells.items())))
