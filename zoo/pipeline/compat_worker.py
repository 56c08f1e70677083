"""`zoo compat`'s worker, run by a runtime environment's own Python (only the runtime and NumPy installed):

    ENV/bin/python -m zoo.pipeline.compat_worker JOB.json RESULT.json
    qemu-aarch64-static -cpu cortex-a76 -L VIEW VIEW/usr/bin/python3.11 -m zoo.pipeline.compat_worker JOB RESULT

(the second: `zoo compat --platform linux/arm64`, the runtime's aarch64 wheels on ``PYTHONPATH``; ``job["home"]``
is then the folder the runtime must be imported from, ``job["options"]`` the runtime options an app sets)

It runs one artifact through the registered runner of one runtime (the same Runner protocol as every
other worker) on the preprocessed input the parent saved, and saves the canonical outputs as .npy for
the parent to compare with the reference (parity needs OpenCV for nothing here, but lives in the main
environment). It imports only torch-free, OpenCV-free modules: the registry, the target's package,
zoo.core. ``stage`` is written once the artifact loaded, so the parent tells "cannot load" from a
crash while running.
"""
from __future__ import annotations

import importlib
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.isolation import worker_main
from zoo.core.meta import ArtifactMeta
from zoo.core.platforms import cpu_features


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text and not isinstance(e, ZooError) else (text[:400] or type(e).__name__)


def run(job: dict) -> dict:
    try:
        return _run(job)
    except Exception as e:  # noqa: BLE001 - before the artifact was opened: the environment or our code
        return {"ok": False, "stage": "env", "error": _one_line(e)}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_version(package: str) -> str | None:
    """The version of an installed distribution, from its ``NAME-VERSION.dist-info`` folder on sys.path
    (importlib.metadata's own answer where there is none): importing importlib.metadata costs ~5 s under
    emulation, a fifth of an emulated worker's start."""
    want = _canonical(package)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info") and n.count("-") == 1:
                name, version = n[: -len(".dist-info")].split("-")
                if _canonical(name) == want:
                    return version
    import importlib.metadata  # a distribution installed some other way (an egg, a .pth)

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(job: dict) -> dict:
    package, module = job["package"], job["module"]
    version = installed_version(package)
    if version is None:
        return {"ok": False, "stage": "env", "error": f"{package} is not installed in {sys.prefix}"}
    mod = importlib.import_module(module)
    where = str(Path(getattr(mod, "__file__", "") or "").resolve())
    home = job.get("home", sys.prefix)  # the environment's own folder ("": the main environment, any)
    if home and not where.startswith(str(Path(home).resolve())):  # our import path must not bring another copy
        return {"ok": False, "stage": "env", "error": f"{module} was imported from {where}, outside {home}"}
    if version != job["version"]:
        return {"ok": False, "stage": "env", "error": f"{package} {version} is installed, not {job['version']}"}
    from zoo.exporters import get_target  # the registry and the target's package: no torch, no OpenCV

    meta = ArtifactMeta.from_dict(job["meta"])
    runner = get_target(job["target"]).runner(Path(job["primary"]), meta, int(job.get("threads", 1)), job["runtime"],
                                              options=job.get("options") or None)
    x = np.load(job["input"])
    base = {"version": version, "numpy": np.__version__, "machine": platform.machine(),
            "cpu_features": sorted(cpu_features())}
    t0 = time.monotonic()
    try:
        runner.__enter__()
    except Exception as e:  # noqa: BLE001 - whatever the runtime raises: it cannot load this artifact
        return {"ok": False, "stage": "load", "error": _one_line(e), **base}
    Path(job["stage"]).write_text("loaded")
    base["settings"] = runner.settings()
    t1 = time.monotonic()
    try:
        out = runner.infer(x)
    except Exception as e:  # noqa: BLE001 - a failure while running, after it loaded
        return {"ok": False, "stage": "run", "error": _one_line(e), **base}
    finally:
        runner.__exit__(None, None, None)
    base["timing"] = {"load": round(t1 - t0, 3), "infer": round(time.monotonic() - t1, 3), "images": int(x.shape[0])}
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = {}
    for name, arr in out.items():
        if name == "detections":  # per image (M_i, 6): one file each
            saved[name] = []
            for i, a in enumerate(arr):
                np.save(out_dir / f"detections-{i}.npy", np.asarray(a, np.float32))
                saved[name].append(str(out_dir / f"detections-{i}.npy"))
        else:
            np.save(out_dir / f"{name}.npy", np.asarray(arr, np.float32))
            saved[name] = str(out_dir / f"{name}.npy")
    return {"ok": True, "outputs": saved, **base}


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:], run))
