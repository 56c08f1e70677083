"""Starting one isolated bench worker (`python -m zoo.validation.bench.worker`) with its thread count."""
from __future__ import annotations

from pathlib import Path

from zoo.core.isolation import run_isolated

WORKER = "zoo.validation.bench.worker"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def spawn(mode: str, job: dict, work: Path, name: str, timeout: float, threads: int) -> dict:
    """Run ``mode`` ("bench" or "peak") in a fresh interpreter whose thread pools are limited to ``threads``."""
    env = {v: str(threads) for v in THREAD_VARS}
    return run_isolated(WORKER, [mode], job, work, timeout, name, env, what="runtime")
