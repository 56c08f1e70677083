"""The isolated benchmark worker: one measurement per fresh interpreter.

    python -m zoo.validation.bench.worker bench JOB.json RESULT.json
    python -m zoo.validation.bench.worker peak  JOB.json RESULT.json

``bench`` loads one artifact in its own runtime (through ``zoo.exporters.load_runner``,
so no target is special-cased), times load/init, warm-up and the timed runs,
and reports peak RSS of this process. ``peak`` measures the single-core float32
matrix-multiply throughput of the machine with NumPy (the parent sets the BLAS
thread variables to 1 before this interpreter starts).

The parent reads RESULT.json; its absence means the runtime crashed.
Only the standard library, NumPy and the zoo packages are imported here
(never torch), so the RSS and timings belong to the runtime under test.
"""
from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path

import numpy as np

import zoo.core.model.specs  # noqa: F401  (load_runner pulls it in: part of the RSS baseline, not of the runtime)
from zoo.exporters import load_runner
from zoo.core.images import builtin_images, load_batch
from zoo.core.isolation import worker_main
from zoo.core.meta import read_meta


def _rss_mb() -> float | None:
    """Current resident set size (MiB) from /proc, None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def measure_artifact(job: dict) -> dict:
    """Load, warm up and time one artifact in its runtime (the ``bench`` mode)."""
    primary = Path(job["primary"])
    threads = int(job["threads"])
    warmup, runs = int(job["warmup"]), int(job["runs"])
    meta = read_meta(primary)
    image = Path(job["image"]) if job.get("image") else builtin_images()[0]
    x, _, _ = load_batch([image], *meta.input_size)
    x = np.ascontiguousarray(x[:1], dtype=np.float32)
    torch_in_baseline = "torch" in sys.modules
    gc.collect()
    base_rss = _rss_mb()

    # cold: the first load in this process (imports the runtime, reads the file)
    t0 = time.perf_counter()
    runner = load_runner(primary, threads=threads, runtime=job.get("runtime"))
    runner.__enter__()
    cold_ms = (time.perf_counter() - t0) * 1e3
    runner.__exit__(None, None, None)
    del runner
    gc.collect()

    # warm: a second load, runtime already imported: what creating a session for this model costs
    t0 = time.perf_counter()
    runner = load_runner(primary, threads=threads, runtime=job.get("runtime"))
    with runner:
        init_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        out = runner.infer(x)
        first_ms = (time.perf_counter() - t0) * 1e3
        shapes = {k: list(v.shape) for k, v in out.items()}
        extra = {}
        if callable(getattr(runner, "bench", None)):
            # a runtime in another process (the web runtimes' Node worker): timed there, so the pipe that
            # carries the tensors is not counted; the CPU time is that process's, measured there too
            lat = runner.bench(x, warmup, runs)
            extra = {"timed_in": "the runtime's own process (the pipe excluded)", **runner.bench_info()}
            cpu = [float(v) for v in extra.pop("cpu_ms", [])]
            cpu_s, wall_s = (sum(cpu) / 1e3, sum(lat) / 1e3) if cpu else (0.0, 0.0)
        else:
            for _ in range(warmup):
                runner.infer(x)
            lat, cpu = [], []
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(runs):
                c = time.process_time_ns()
                t = time.perf_counter_ns()
                runner.infer(x)
                lat.append((time.perf_counter_ns() - t) / 1e6)
                cpu.append((time.process_time_ns() - c) / 1e6)
            cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
        runtime_name = getattr(runner, "name", type(runner).__name__)
    peak = _peak_rss_mb() + float(extra.pop("peak_rss_mb", 0.0))
    return {
        "ok": True,
        "runtime": runtime_name,
        "latencies_ms": lat,
        "cpu_ms": cpu,
        "init_ms": init_ms,
        "cold_init_ms": cold_ms,
        "first_infer_ms": first_ms,
        "cpu_util": cpu_s / wall_s if wall_s > 0 else None,
        "base_rss_mb": base_rss,
        "peak_rss_mb": peak,
        **extra,
        "output_shapes": shapes,
        "torch_in_baseline": torch_in_baseline,
        "input_shape": list(x.shape),
    }


def measure_peak(job: dict) -> dict:
    """Single-thread float32 GEMM throughput (GFLOP/s) from the fastest of many short calls.

    On a shared machine a call is often descheduled part-way; the fastest of
    ~100 calls of a few ms each is one that ran undisturbed, which is what a
    roofline needs. The median call and the CPU-time rate are reported beside it.
    """
    try:  # belt and braces: the parent already set the BLAS thread variables to 1
        from threadpoolctl import threadpool_limits  # optional: used when installed

        limiter = threadpool_limits(limits=1)
    except ImportError:
        limiter = None
    n = int(job.get("n", 512))
    seconds = float(job.get("seconds", 0.3))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    for _ in range(3):
        np.matmul(a, b, out=c)
    flop = 2.0 * n * n * n
    walls, cpus = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(walls) < 10:
        c0, t0 = time.process_time(), time.perf_counter()
        np.matmul(a, b, out=c)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    if limiter is not None:
        limiter.restore_original_limits()
    walls_sorted = sorted(walls)
    med_wall = walls_sorted[len(walls) // 2]
    return {
        "ok": True,
        "gflops": flop / walls_sorted[0] / 1e9,
        "median_gflops": flop / med_wall / 1e9,
        "cpu_gflops": flop / max(sorted(cpus)[len(cpus) // 2], 1e-9) / 1e9,
        "calls": len(walls),
        "n": n,
        "dtype": "float32",
        "cpu_util": sum(cpus) / sum(walls) if sum(walls) > 0 else None,
        "threadpoolctl": limiter is not None,
    }


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:], measure_peak if sys.argv[1] == "peak" else measure_artifact))
