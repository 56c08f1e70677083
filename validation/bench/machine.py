"""The machine a benchmark ran on: CPU, cores, load, and its single-core float32 GEMM peak (the roofline)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from zoo.validation.bench.spawn import spawn
from zoo.core.errors import ZooError

_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd")


def measure_matmul_peak(work: Path, n: int = 512, seconds: float = 0.3, timeout: float = 120.0) -> dict:
    """Single-core float32 GEMM GFLOP/s of this machine (NumPy, one BLAS thread, in a subprocess)."""
    res = spawn("peak", {"n": n, "seconds": seconds}, work, "peak", timeout, threads=1)
    if not res.get("ok"):
        raise ZooError(f"could not measure the matrix-multiply peak: {res.get('error')}")
    return res


def _cpuinfo(field: str) -> str | None:
    """The first ``field: value`` of /proc/cpuinfo, None where unavailable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(field):
                return line.split(":", 1)[1]
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    name = _cpuinfo("model name")
    return name.strip() if name is not None else (platform.processor() or platform.machine())


def _cpu_flags() -> list[str]:
    have = set((_cpuinfo("flags") or "").split())
    return [f for f in _FLAGS if f in have]


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_available": cores_available(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_start": loadavg(),
    }
