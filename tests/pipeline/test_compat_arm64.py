"""Issue 30: `zoo compat --platform linux/arm64` runs rfb-320's ncnn, MNN and LiteRT files (fp32 and int8) in the
aarch64 builds of their runtimes under qemu user-mode emulation, on an ARMv8.0 and an ARMv8.2 CPU model, with
the options an app gets; and proves that the lane runs ARM kernels (ncnn's fp16 defaults on ARMv8.2).

The environments (the pinned Debian 12 arm64 userland and one per runtime release, ~0.5 GB) are built by
`zoo compat --prepare` once per machine in $ZOO_COMPAT_DIR when it is set (`.ci/run` sets it), else in a
session temp folder. Evidence: one photo of the gate half (8.jpg, 52 faces): under emulation one inference
costs ~50x native (3-10 s), so the lane runs one image per cell; the full tables of the closing note use the
16 pinned photos. Without qemu-aarch64 the tests skip locally (CI installs it and fails instead)."""
from __future__ import annotations

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import IMAGES, ROOT, assert_built, assert_clean_error, zoo

NEW = {"ncnn": "1.0.20261020", "mnn": "3.6.1", "litert": "2.3.0"}
RUNTIMES = ",".join(f"{rt}=={v}" for rt, v in NEW.items())
TARGETS = {"ncnn": "ncnn", "mnn": "mnn", "tflite": "litert"}
NONET = ROOT / "tests" / "targets" / "nonet"
GATE_IMAGE = "8.jpg"  # of the gate half (HALVES["B"]): int8 is calibrated on the other half


def _qemu() -> str | None:
    from zoo.core.platforms import get_platform
    from zoo.pipeline.compat_platform import find_qemu

    q = find_qemu(get_platform("linux/arm64"))
    return q.version if q else None


@pytest.fixture(scope="session")
def arm64_cache(tmp_path_factory) -> Path:
    if _qemu() is None:
        msg = "qemu-aarch64-static is not installed (apt-get install qemu-user-static): the aarch64 lane cannot run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    d = os.environ.get("ZOO_COMPAT_DIR")
    cache = Path(d) if d else tmp_path_factory.mktemp("compat-envs")
    t0 = time.monotonic()
    # --prepare downloads by design (the pinned Debian userland from the Debian mirror, the aarch64 wheels
    # with pip): the one command outside the OS-level network audit here; every run below is audited
    cp = zoo("compat", "--prepare", "--platform", "linux/arm64", "--runtime", RUNTIMES, "--json",
             env={"ZOO_COMPAT_DIR": str(cache)}, check=0, timeout=2400, audit=False)
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = json.loads(cp.stdout)["environments"]
    assert all(r["state"] == "ready" for r in rows), rows
    print(f"\narm64 prepare: {time.monotonic() - t0:.0f} s ({'cold' if 'creating' in cp.stderr else 'warm'})")
    return cache


@pytest.fixture(scope="module")
def lane(export_dir, arm64_cache, tmp_path_factory):
    """The fp32 and int8 files of rfb-320 for ncnn, MNN and TFLite (the target tests' exports) on both CPU
    models; the parent process runs with the no-network hook (nothing is installed outside --prepare)."""
    prims, folders = [], []
    for target in TARGETS:
        folder, manifest, cp = export_dir("rfb-320", target, "fp32,fp16,int8")
        assert_built(manifest, cp)  # exit 2 only for an honest int8 FAIL (issue 29's strict tiers, shift gate)
        folders.append(folder)
        prims += [folder / a["primary"] for a in manifest["artifacts"] if a["precision"] in ("fp32", "int8")]
    imgs = tmp_path_factory.mktemp("arm64-images")
    shutil.copy(IMAGES / GATE_IMAGE, imgs / GATE_IMAGE)
    out = tmp_path_factory.mktemp("arm64")
    env = {"ZOO_COMPAT_DIR": str(arm64_cache), "PYTHONPATH": f"{NONET}{os.pathsep}{ROOT}",
           "ZOO_NONET_LOG": str(out / "net.log")}
    t0 = time.monotonic()
    cp = zoo("compat", *prims, "--platform", "linux/arm64", "--runtime", RUNTIMES, "--images", imgs, "--json",
             "--junit", out / "compat.xml", "--jobs", "2", env=env, check=0, timeout=3600)
    secs = time.monotonic() - t0
    assert cp.returncode == 0, cp.stderr[-3000:]
    doc = json.loads(cp.stdout)
    print(f"\narm64 lane: {len(doc['results'])} cells in {secs:.0f} s")
    return {"doc": doc, "cp": cp, "prims": prims, "folders": folders, "junit": out / "compat.xml",
            "net": out / "net.log", "env": {"ZOO_COMPAT_DIR": str(arm64_cache)}, "images": imgs}


def _cells(doc: dict) -> dict:
    from zoo.validation.compat import options_label

    return {(c["target"], c["precision"], c["cpu"], options_label(c["options"])): c for c in doc["results"]}


def _strict_only(c: dict) -> bool:
    """A cell PASSes, or FAILs only on detections with the margin rule held (>= 99% kept, <= 1% extra)."""
    par = c.get("parity") or {}
    return c["status"] == "PASS" or (
        c["status"] == "FAIL" and bool(par.get("failures")) and all(f.startswith("detections:") for f in par["failures"])
        and par["matched"] >= 0.99 * par["reference"] and par["extra"] <= 0.01 * par["reference"])


def test_every_file_on_both_cpus_with_the_options_an_app_gets(lane):
    doc = lane["doc"]
    cells = _cells(doc)
    # ncnn: its library defaults; MNN: our precision and `low`; LiteRT: XNNPACK's defaults
    expected = {(t, p, cpu, o) for t, opts in (("ncnn", ["library defaults"]), ("mnn", ["precision=high", "precision=low"]),
                                               ("tflite", ["defaults"]))
                for p in ("fp32", "int8") for cpu in ("armv8.0", "armv8.2") for o in opts}
    assert set(cells) == expected and len(doc["results"]) == len(expected) == 16
    for (t, p, cpu, o), c in cells.items():
        assert c["platform"] == "linux/arm64" and c["runtime"] == TARGETS[t] and c["version"] == NEW[TARGETS[t]]
        assert c["emulation"]["qemu"] and c["emulation"]["qemu_cpu"] == {"armv8.0": "cortex-a72", "armv8.2": "cortex-a76"}[cpu]
        assert {"libc6", "python3.11-minimal", "libstdc++6"} <= set(c["userland"]["packages"])
        assert c["seconds"] > 0 and c["parity"]["reference"] >= 40 and c["parity"]["evidence"]["images"] == 1
        # fp32 files pass outright; an int8 file may FAIL only the strict rule of its tier (issue 29: no score
        # margin; one photo of 52 faces allows one strict miss and no strict extra), never by losing faces
        if p == "fp32":
            assert c["x86"]["status"] == "PASS", c["x86"]
            assert c["status"] == "PASS", (t, p, cpu, o, c["message"])
        else:
            assert c["x86"]["status"] in ("PASS", "FAIL"), c["x86"]
            assert _strict_only(c), (t, p, cpu, o, c["message"])
        assert set(c["x86"]["max_abs"]) >= {"scores", "boxes"}
    # the emulated CPUs are what they claim: fp16 arithmetic (asimdhp) and dot product only on ARMv8.2
    a72, a76 = (cells[("ncnn", "fp32", cpu, "library defaults")]["emulation"]["features"].split() for cpu in ("armv8.0", "armv8.2"))
    assert "asimdhp" not in a72 and "asimddp" not in a72 and {"asimdhp", "asimddp"} <= set(a76)
    assert not (lane["net"].exists() and lane["net"].read_text().strip())  # the run itself installs nothing


def test_the_lane_runs_arm_kernels_ncnn_fp16_on_armv8_2(lane):
    """The issue's proof: ncnn's defaults on ARMv8.2 (fp16 storage and arithmetic) move the fp32 file's scores
    off x86's by more than 1e-3, so the cell is judged by the fp16 tier and says so; with fp16 off (the
    alternative) they agree within 1e-5. On ARMv8.0 the same defaults are fp32."""
    cells = _cells(lane["doc"])
    c = cells[("ncnn", "fp32", "armv8.2", "library defaults")]
    assert c["settings"]["options"]["mode"] == "library defaults" and c["settings"]["options"]["use_fp16_arithmetic"]
    assert c["settings"]["reduced"] == "fp16 storage and arithmetic" and c["tier"] == "fp16"
    assert c["x86"]["max_abs"]["scores"] > 1e-3
    assert "fp16" in c["tier_note"]
    alt = c["alternative"]
    assert alt["options"] == {"defaults": True, "use_fp16_packed": False, "use_fp16_storage": False, "use_fp16_arithmetic": False}
    assert alt["status"] == "PASS" and alt["tier"] == "fp32" and alt["x86"]["max_abs"]["scores"] < 1e-5
    old = cells[("ncnn", "fp32", "armv8.0", "library defaults")]
    assert old["tier"] == "fp32" and old["settings"]["reduced"] is None and "alternative" not in old
    assert old["x86"]["max_abs"]["scores"] < 1e-5
    # int8: ARM's own int8 kernels, not x86's (the scores differ from x86's, on both CPUs)
    for cpu in ("armv8.0", "armv8.2"):
        assert cells[("ncnn", "int8", cpu, "library defaults")]["x86"]["max_abs"]["scores"] > 1e-4
    # MNN `precision: low` is fp16 arithmetic on ARMv8.2 only; its alternative is our `high`, not run twice
    low = cells[("mnn", "fp32", "armv8.2", "precision=low")]
    assert low["tier"] == "fp16" and low["settings"]["reduced"] == "fp16 arithmetic" and low["x86"]["max_abs"]["scores"] > 1e-4
    high = cells[("mnn", "fp32", "armv8.2", "precision=high")]
    assert low["alternative"]["options"] == {"precision": "high"} and low["alternative"]["seconds"] == high["seconds"]
    assert cells[("mnn", "fp32", "armv8.0", "precision=low")]["tier"] == "fp32"
    # LiteRT's XNNPACK keeps fp32 for a float file: the same scores as x86 to rounding
    for cpu in ("armv8.0", "armv8.2"):
        assert cells[("tflite", "fp32", cpu, "defaults")]["x86"]["max_abs"]["scores"] < 1e-5


def test_junit_compat_json_report(lane):
    doc = lane["doc"]
    cases = ET.parse(lane["junit"]).getroot().findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert len(cases) == len(doc["results"]) == len(names)  # platform, CPU and options are part of the name
    assert "rfb-320 ncnn/fp32/raw @ ncnn==1.0.20261020 [linux/arm64 armv8.2 library defaults]" in names
    folder = next(f for f in lane["folders"] if (f / "ncnn").is_dir())
    saved = json.loads((folder / "compat.json").read_text())
    mine = [c for c in saved["results"] if c.get("platform")]
    assert sorted((c["precision"], c["cpu"], json.dumps(c["options"])) for c in mine) == [
        (p, cpu, '{"defaults": true}') for p in ("fp32", "int8") for cpu in ("armv8.0", "armv8.2")]
    line = saved["platform_summary"]["rfb-320 ncnn/fp32/raw"]["linux/arm64"]["line"]
    assert line == ("x86-64 PASS; linux/arm64 (library defaults) armv8.0 PASS, armv8.2 PASS "
                    "(fp16 tier: ncnn fp16 storage and arithmetic on)")
    rep = zoo("report", folder, check=0).stdout
    assert line in rep and "| rfb-320 ncnn/fp32/raw | ncnn==1.0.20261020 | armv8.2 | library defaults | PASS (fp16 tier) |" in rep
    assert "on ARMv8.2 (linux/arm64), run this ncnn file with use_fp16_packed = false" in rep


def test_without_qemu_the_cells_are_unavailable_and_the_run_succeeds(lane, tmp_path):
    """A machine without qemu-aarch64 (the README's fresh-machine path): every cell `unavailable` with what to
    install, exit 0; `--cpu` without `--platform`, an unknown platform or CPU: one line, exit 1."""
    ncnn_fp32 = next(p for p in lane["prims"] if p.name == "rfb-320-raw-fp32.param")
    env = {**lane["env"], "ZOO_QEMU_AARCH64": str(tmp_path / "no-qemu")}
    cp = zoo("compat", ncnn_fp32, "--platform", "linux/arm64", "--runtime", f"ncnn=={NEW['ncnn']}", "--images",
             lane["images"], "--json", "--no-save", env=env, check=0)
    assert cp.returncode == 0, cp.stderr
    cells = json.loads(cp.stdout)["results"]
    assert [(c["cpu"], c["status"]) for c in cells] == [("armv8.0", "unavailable"), ("armv8.2", "unavailable")]
    assert "ZOO_QEMU_AARCH64" in cells[0]["message"]
    assert_clean_error(zoo("compat", ncnn_fp32, "--cpu", "armv8.2"), "--cpu needs --platform")
    assert_clean_error(zoo("compat", ncnn_fp32, "--platform", "linux/arm"), "unknown --platform", "linux/arm64")
    assert_clean_error(zoo("compat", ncnn_fp32, "--platform", "linux/arm64", "--cpu", "armv9"), "unknown --cpu",
                       "armv8.0, armv8.2")


def test_a_broken_environment_is_error_and_an_unprepared_one_unavailable(lane, tmp_path):
    """An environment whose runtime was removed after it was built is `error` (the environment, not the
    artifact); a release never prepared is `unavailable` with the --prepare line (runs install nothing)."""
    from zoo.pipeline.compat_env import load_matrix

    real = Path(lane["env"]["ZOO_COMPAT_DIR"])
    cache = tmp_path / "envs"
    cache.mkdir()
    spec = load_matrix().spec("ncnn", NEW["ncnn"]).on("linux/arm64")
    for p in real.iterdir():
        if p.name.startswith("userland-"):
            (cache / p.name).symlink_to(p)
    env_dir = cache / spec.env_name
    (env_dir / "site").mkdir(parents=True)
    shutil.copy(real / spec.env_name / "zoo-compat-env.json", env_dir / "zoo-compat-env.json")
    for p in (real / spec.env_name / "site").iterdir():
        if not p.name.startswith("ncnn"):  # the runtime is gone, NumPy stays
            (env_dir / "site" / p.name).symlink_to(p)
    ncnn_fp32 = next(p for p in lane["prims"] if p.name == "rfb-320-raw-fp32.param")
    args = ("--platform", "linux/arm64", "--cpu", "armv8.0", "--images", lane["images"], "--json", "--no-save")
    cp = zoo("compat", ncnn_fp32, "--runtime", f"ncnn=={NEW['ncnn']}", *args, env={"ZOO_COMPAT_DIR": str(cache)}, check=0)
    (c,) = json.loads(cp.stdout)["results"]
    assert c["status"] == "error" and "ncnn is not installed" in c["message"], c
    cp = zoo("compat", ncnn_fp32, "--runtime", "ncnn==1.0.20250503", *args, env={"ZOO_COMPAT_DIR": str(cache)}, check=0)
    (c,) = json.loads(cp.stdout)["results"]
    assert c["status"] == "unavailable" and "zoo compat --prepare --platform linux/arm64" in c["message"]
    assert not [p for p in cache.iterdir() if "1.0.20250503" in p.name]
