"""Shared fixtures. Real checkpoints, real images, real runtimes; nothing mocked.

The material lives outside the repo: ZOO_SHARED (default: ../shared next to
the checkout) holds upstream/checkpoints, upstream/reference and images, as
pinned in zoo/core/data/test_material.toml (`scripts/fetch_shared.sh` lays it
out; tests never download). Tests under tests/unit need none of it. Where it is
missing or incomplete, every other test is skipped with the reason, except
under CI (CI=true), where each of them fails instead. Under CI=true every other skip fails too,
unless tests/ci_skips.toml allows it with its reason (tests/ci_skips.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 - hooks: under CI=true a skip fails

import osaudit
import zoo as _zoo  # noqa: F401 - first: turns the libraries' usage reporting off in this process (zoo.core.telemetry)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZOO_SHARED", ROOT.parent / "shared")).resolve()
CKPT_DIR = SHARED / "upstream" / "checkpoints"
REFERENCE = SHARED / "upstream" / "reference"
IMAGES = SHARED / "images"

UNIT = Path(__file__).resolve().parent / "unit"
#: the Python audit hook's sitecustomize (network and pip refused and logged)
NONET = Path(__file__).resolve().parent / "targets" / "nonet"

#: two halves of the shared photos, balanced by faces (~145 each for every model of the family):
#: int8 is calibrated on one and gated on the other (benchmarks/int8_heldout.py uses the same split)
HALVES = {
    "A": ["10.jpg", "11.jpg", "12.jpg", "13.jpg", "15.jpg", "17.jpg", "18.jpg", "5.jpg"],
    "B": ["1.jpg", "16.jpg", "19.jpg", "2.jpg", "3.jpg", "6.jpg", "8.jpg", "9.jpg"],
}

os.environ.setdefault("ZOO_CHECKPOINT_DIR", str(CKPT_DIR))
# never let a test download: a cache in a private temp folder, and the default parity photos
# (the 16 pinned ones, zoo.core.parity_set) from the shared material, offline
os.environ.setdefault("ZOO_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"zoo-test-cache-{os.getpid()}"))
os.environ.setdefault("ZOO_IMAGES_DIR", str(IMAGES))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _material_problem() -> str | None:
    """Why the shared material is not usable (None when every pinned file is there at its size)."""
    from zoo.core.upstream import load_list, status

    files = load_list()
    bad = [f.local for f in files if status(f, SHARED, sha256=False)]
    if not bad:
        return None
    return (f"shared material missing or incomplete at {SHARED} ({len(bad)} of {len(files)} pinned files, "
            f"e.g. {bad[0]}): run scripts/fetch_shared.sh {SHARED}, or set ZOO_SHARED")


_MISSING = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the unit marker must be there
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.is_relative_to(UNIT):
            item.add_marker(pytest.mark.unit)
    needs = [item for item in items if not item.path.is_relative_to(UNIT)]
    problem = _material_problem() if needs else None
    if problem is None:
        return
    in_ci = os.environ.get("CI", "").lower() == "true"
    for item in needs:
        if in_ci:  # in CI a missing folder is a broken pipeline, not a reason to pass: fail at setup
            item.stash[_MISSING] = problem
        else:
            item.add_marker(pytest.mark.skip(reason=problem))


def pytest_runtest_setup(item):
    if _MISSING in item.stash:
        pytest.fail(item.stash[_MISSING], pytrace=False)


#: every `zoo()` command runs under the OS-level network audit (tests/osaudit.py) where strace exists;
#: CI installs it (scripts/install_strace.sh). Counts for the summary at the end of the run.
OS_AUDIT = osaudit.missing_reason() is None
_AUDITED = {"commands": 0, "processes": 0, "seconds": 0.0}
_AUDIT_DIR: list[Path] = []


def _audit_dir() -> Path:
    if not _AUDIT_DIR:
        import tempfile

        _AUDIT_DIR.append(Path(tempfile.mkdtemp(prefix="zoo-os-audit-")))
    return _AUDIT_DIR[0]


def zoo(*args, env=None, check=None, timeout=900, audit: bool | None = None,
        installs: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh process (exit codes, stderr and all).

    Under the OS-level network audit by default (``audit=None``: when strace is installed): the command
    and every process it starts may reach loopback only, look up no name and run no installer; any of
    that fails the calling test at once, naming the process. ``cp.audit`` holds what the audit saw.
    ``installs=True`` for a command that installs by design (`zoo compat` creating an environment): pip's
    processes are excepted, every other process (the environment's import probe, the runs) is audited."""
    e = dict(os.environ)
    e.update(env or {})
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "zoo", *map(str, args)]
    if OS_AUDIT if audit is None else audit:
        import time

        t0 = time.monotonic()
        with osaudit.os_audit(_audit_dir(), allow_installers=installs) as a:
            cp = a.run(cmd, capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)
        cp.audit = a
        _AUDITED["commands"] += 1
        _AUDITED["processes"] += len(a.processes)
        _AUDITED["seconds"] += time.monotonic() - t0
        assert a.clean, f"`zoo {' '.join(map(str, args))[:300]}` reached beyond loopback:\n{a.report()}"
    else:
        cp = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)
        cp.audit = None
    if check is not None:
        assert cp.returncode == check, f"exit {cp.returncode}\nstdout:\n{cp.stdout[-3000:]}\nstderr:\n{cp.stderr[-3000:]}"
    return cp


def assert_clean_error(cp: subprocess.CompletedProcess, *needles: str, code: int = 1) -> None:
    """One clear line on stderr, the expected exit code, no traceback."""
    assert cp.returncode == code, f"exit {cp.returncode}: {cp.stderr}"
    assert "Traceback" not in cp.stderr and "Traceback" not in cp.stdout, cp.stderr
    err_lines = [l for l in cp.stderr.splitlines() if l.startswith("error:")]
    assert len(err_lines) == 1, cp.stderr
    for n in needles:
        assert n.lower() in err_lines[0].lower(), f"{n!r} not in {err_lines[0]!r}"


@pytest.fixture(scope="session")
def image_paths() -> list[Path]:
    paths = sorted(IMAGES.glob("*.jpg"))
    assert paths, f"no images in {IMAGES}"
    return paths


@pytest.fixture(scope="session")
def halves(tmp_path_factory) -> dict[str, Path]:
    """HALVES as two folders of links to the shared photos."""
    out = {}
    for k, names in HALVES.items():
        d = tmp_path_factory.mktemp(f"half-{k}")
        for n in names:
            (d / n).symlink_to(IMAGES / n)
        out[k] = d
    return out


@pytest.fixture(scope="session")
def batch_cache():
    """Preprocessed image batches per input size, computed once."""
    from zoo.core.images import load_batch

    cache = {}

    def get(size):
        if size not in cache:
            cache[size] = load_batch(sorted(IMAGES.glob("*.jpg")), *size)
        return cache[size]

    return get


@pytest.fixture(scope="session")
def resolved():
    from zoo.checkpoints.resolve import resolve_model

    cache = {}

    def get(model_id):
        if model_id not in cache:
            cache[model_id] = resolve_model(model_id)
        return cache[model_id]

    return get


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory, halves):
    """Export once per session: export_dir(model_id, targets, precisions, head=None) -> (folder, manifest).

    int8 is calibrated on half A of the photos and every artifact is gated on half B (never the
    calibration images); a half holds ~145 faces, hence --min-evidence 100."""
    cache = {}

    def get(model_id: str, targets: str, precisions: str = "fp32", head: str | None = None, extra=()):
        key = (model_id, targets, precisions, head, tuple(extra))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"export-{model_id}-{targets.replace(',', '_')}")
            args = ["export", "--model", model_id, "--to", targets, "--precision", precisions, "--out", out,
                    "--images", halves["B"], "--calib", halves["A"], "--min-evidence", "100", "--jobs", "2", *extra]
            if head:
                args += ["--head", head]
            # under both network audits: the OS-level one (zoo()) and the Python hook, logged beside the folder
            # (tests/targets/test_no_network.py reads both)
            hook = {"ZOO_NONET_LOG": str(out.parent / f"{out.name}.nonet.log"), "PYTHONPATH": str(NONET)}
            cp = zoo(*args, env=hook)
            manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else None
            cache[key] = (out, manifest, cp)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def compat_cache(tmp_path_factory) -> Path:
    """Where `zoo compat`'s runtime environments are kept: $ZOO_COMPAT_DIR (CI keeps them beside the clone),
    else a folder of this session (tests/pipeline/test_compat.py, tests/targets/test_no_network.py)."""
    d = os.environ.get("ZOO_COMPAT_DIR")
    return Path(d) if d else tmp_path_factory.mktemp("compat-envs")


@pytest.fixture(scope="session")
def rfb_release(tmp_path_factory) -> Path:
    """A release of rfb-320, every target, fp32 and int8, built once per session (the default parity
    photos, jobs 2). Shared: tests copy it before changing anything in it."""
    out = tmp_path_factory.mktemp("release-rfb-320")
    cp = zoo("release", "--out", out, "--models", "rfb-320", "--targets", "onnx,mnn,ncnn,tflite,caffe",
             "--precisions", "fp32,int8", "--jobs", "2")
    # the default matrix offers only what holds (zoo.core.withheld): every artifact built and PASS, exit 0;
    # the flavours measured to fail are left out, named in the spec and on a `withheld:` line
    from zoo.core.withheld import withheld

    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["failed"], manifest["failed"]
    failing = [(a["target"], a["precision"], a["parity"]["failures"]) for a in manifest["artifacts"] if not a["parity"]["passed"]]
    assert cp.returncode == 0 and not failing, (failing, cp.stdout[-3000:] + cp.stderr[-3000:])
    left = [w.to_dict() for w in withheld() if w.model == "rfb-320" and w.target in ("onnx", "mnn", "ncnn", "tflite", "caffe")]
    assert manifest["release"].get("withheld", []) == left
    built = {(a["target"], a["precision"]) for a in manifest["artifacts"]}
    for w in left:
        assert (w["target"], w["precision"]) not in built
        assert f"withheld: rfb-320 {w['target']}/{w['precision']}" in cp.stdout, cp.stdout[-3000:]
        assert f"rfb-320 {w['target']}/{w['precision']} withheld from the default matrix" in (out / "REPORT.md").read_text()
    return out


def ort_run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """Plain onnxruntime, none of our code: one image at a time (reference files have batch 1)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    outs = [s.run(None, {name: x[i : i + 1]}) for i in range(x.shape[0])]
    return [np.concatenate([o[j] for o in outs], 0) for j in range(len(outs[0]))]


def pytest_terminal_summary(terminalreporter):
    if _AUDITED["commands"]:
        terminalreporter.write_line(
            f"OS-level network audit: {_AUDITED['commands']} zoo commands ({_AUDITED['processes']} processes, "
            f"{_AUDITED['seconds']:.0f} s) under strace -f")
    elif not OS_AUDIT:
        terminalreporter.write_line(f"OS-level network audit off: {osaudit.missing_reason()}")


def pytest_sessionfinish(session, exitstatus):
    for d in _AUDIT_DIR:
        try:
            d.rmdir()  # empty unless an audit found something (its logs are kept, and named in the failure)
        except OSError:
            pass


def pytest_report_header(config):
    from fuzzing import EXAMPLES, SEED

    return f"fuzz: seed {SEED}, examples x{EXAMPLES} (ZOO_FUZZ_SEED, ZOO_FUZZ_EXAMPLES)"


def verdict_from_counts(parity: dict) -> bool:
    """An fp16/int8 verdict recomputed from what the parity result records: the tier's detection rule
    (margin and strict) on the photos' counts and on the shift gate's pooled counts, and no other failure
    (tensors, invariants). A test that accepts a failing verdict checks it is this, and honest."""
    from zoo.core.manifest import base_precision
    from zoo.validation.parity import TIERS, detection_verdict

    tier = TIERS[base_precision(parity["precision"])]
    keys = ("reference", "matched", "extra", "borderline_missed", "borderline_extra")
    ok = detection_verdict({k: parity["detections"][k] for k in keys}, tier)
    sh = parity.get("shift")
    if sh is not None:
        ok = ok and detection_verdict({k: sh["pooled"][k] for k in keys}, tier)
    others = [f for f in parity["failures"] if not f.startswith(("detections:", "shift: detections:"))]
    return ok and not others


def assert_int8_verdict(a: dict, stdout: str) -> None:
    """An int8 artifact's verdict is the tier's rule on its recorded counts; the photos keep >= 99% of the
    faces under the score margin (the floor every int8 file has met); a FAIL is printed as such."""
    p = a["parity"]
    label = f"{a['target']}/{a['precision']}"
    assert p["passed"] is verdict_from_counts(p), (label, p["failures"])
    d = p["detections"]
    assert d["recall"] >= 0.99 and d["extra_rate"] <= 0.01, (label, d)
    if not p["passed"]:
        assert any(l.startswith("FAIL") and a["target"] in l and a["precision"] in l
                   for l in stdout.splitlines()), (label, stdout[-2000:])


def assert_built(manifest: dict | None, cp: subprocess.CompletedProcess) -> None:
    """An export (or release) built every artifact; it exits 0, or 2 when an int8 verdict FAILs its tier's
    strict rule or the shift gate, and then only honestly (`assert_int8_verdict`). fp32 and fp16 pass."""
    assert manifest is not None and not manifest["failed"], cp.stdout[-2000:] + cp.stderr[-2000:]
    failing = [a for a in manifest["artifacts"] if not (a.get("parity") or {"passed": True})["passed"]]
    assert cp.returncode == (2 if failing else 0), cp.stdout[-2000:] + cp.stderr[-2000:]
    for a in failing:
        assert a["precision"].startswith("int8"), (a["target"], a["precision"], a["parity"]["failures"])
        assert_int8_verdict(a, cp.stdout)
