"""The int8 sensitivity analysis of one model, computed once per checkpoint and calibration set.

`build_artifacts` asks for it before any int8 conversion; every int8 target of the export (and of
later exports of the same checkpoint with the same calibration images and rules) gets the same
answer. It runs in an isolated worker (zoo.pipeline.worker, kind "sensitivity") and is kept in the
user cache (``$ZOO_CACHE_DIR/sensitivity/<key>.json``), where the key hashes everything the
analysis depends on. A cached file is input like any other: one that does not parse, does not hold
its own key, or does not have the expected shape is ignored (and replaced), never trusted.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text, sha256_file, user_cache
from zoo.core.model import sensitivity as S
from zoo.pipeline.worker import ANALYSIS_THREADS, run_worker

TIMEOUT = 1800.0  # seconds: the analysis runs the PyTorch model ~60 times on the calibration images
CACHE = "sensitivity"


def analysis_key(checkpoint_sha256: str, meta: dict, calib: list[str]) -> str:
    facts = {"checkpoint": checkpoint_sha256, "arch": meta.get("arch"), "input_size": meta.get("input_size"),
             "labels": meta.get("labels"), "calib": [sha256_file(Path(p)) for p in calib],
             "rules": {"keep_ratio": S.KEEP_RATIO, "max_float_params": S.MAX_FLOAT_PARAMS, "images": S.MAX_IMAGES,
                       "threads": ANALYSIS_THREADS},
             "zoo": __version__}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def valid_analysis(data: object, key: str) -> bool:
    """Whether ``data`` (a parsed cache file) is an analysis for ``key``, in the shape the targets read."""
    if not isinstance(data, dict) or data.get("key") != key:
        return False
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        return False
    modules = set()
    for l in layers:
        if not (isinstance(l, dict) and isinstance(l.get("module"), str) and l["module"]
                and isinstance(l.get("params"), int) and not isinstance(l.get("params"), bool) and l["params"] > 0
                and isinstance(l.get("error"), (int, float)) and not isinstance(l.get("error"), bool)
                and math.isfinite(l["error"]) and l["error"] >= 0):
            return False
        modules.add(l["module"])
    kept = data.get("float_kept")
    return isinstance(kept, list) and all(isinstance(k, str) for k in kept) and set(kept) <= modules


def read_cached(path: Path, key: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if valid_analysis(data, key) else None


def analyse(job: dict, work: Path, say=None, timings: dict | None = None, warm=None) -> tuple[dict | None, str | None]:
    """(analysis, None), or (None, why it failed). ``job``: the worker's "sensitivity" job. ``timings``:
    receives the worker's timings (`zoo export --profile`) when the analysis runs; ``warm``: the
    run's warm processes (zoo.pipeline.worker.run_worker)."""
    say = say or (lambda msg: None)
    key = analysis_key(job["checkpoint_sha256"], job["meta"], job["calib"])
    path = user_cache(CACHE) / f"{key}.json"
    cached = read_cached(path, key)
    if cached is not None:
        say(f"int8 sensitivity analysis: reused ({path})")
        return cached, None
    say(f"int8 sensitivity analysis on {len(job['calib'])} calibration image(s) ...")
    res = run_worker(job, work, TIMEOUT, "sensitivity", warm=warm)
    if timings is not None:
        timings.update(res.get("timings") or {})
    if not res.get("ok"):
        return None, f"the int8 sensitivity analysis failed: {res.get('error')}"
    analysis = {**res["sensitivity"], "key": key}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(analysis, indent=1, sort_keys=True) + "\n")
    except (OSError, ZooError):  # a read-only cache only costs the next export the analysis again
        pass
    return analysis, None
