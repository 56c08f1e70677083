"""The benchmark: every (artifact, thread count) in fresh worker processes, over interleaved rounds."""
from __future__ import annotations

import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from zoo.validation.bench.items import BenchItem
from zoo.validation.bench.machine import loadavg, machine_info, measure_matmul_peak
from zoo.validation.bench.spawn import spawn
from zoo.validation.bench.stats import summarize
from zoo import __version__
from zoo.core.errors import ZooError

SCHEMA_VERSION = 1
DEFAULT_TIMEOUT = 300.0


def parse_threads(text: str | None) -> list[int]:
    """'1,2' -> [1, 2]; anything else than positive integers is a ZooError."""
    items = [s.strip() for s in str(text or "").split(",") if s.strip()]
    if not items:
        raise ZooError("--threads is empty: give thread counts like 1 or 1,2")
    out = []
    for s in items:
        try:
            n = int(s)
        except ValueError:
            raise ZooError(f"bad --threads value {s!r}: expected positive integers, e.g. 1,2") from None
        if n < 1 or n > 256:
            raise ZooError(f"bad --threads value {s!r}: thread counts must be between 1 and 256")
        if n not in out:
            out.append(n)
    return out


def run_bench(
    items: list[BenchItem],
    threads: list[int] = (1,),
    warmup: int = 10,
    runs: int = 50,
    rounds: int = 3,
    timeout: float = DEFAULT_TIMEOUT,
    progress=None,
    image: Path | None = None,
    runtime: str | None = None,
) -> dict:
    """Measure every item x thread count in fresh worker processes, ``rounds`` interleaved rounds.

    ``progress(done, total, label)`` is called before each measurement and once at the end.
    Returns ``{"schema_version", "zoo_version", "timestamp", "machine", "settings", "results": [...]}``;
    a result with an ``error`` key was not measured (crash, timeout, runtime error).
    """
    if warmup < 0:
        raise ZooError(f"--warmup must be >= 0, got {warmup}")
    if runs < 1:
        raise ZooError(f"--runs must be >= 1, got {runs}")
    if rounds < 1:
        raise ZooError(f"--rounds must be >= 1, got {rounds}")
    threads = list(threads)
    if not items:
        raise ZooError("nothing to benchmark")
    say = progress or (lambda done, total, label: None)
    machine = machine_info()
    settings = {"threads": threads, "warmup": warmup, "runs": runs, "rounds": rounds,
                "input": "one real photo, batch 1", "isolation": "one fresh process per artifact x threads x round"}
    if runtime is not None:
        settings["runtime"] = runtime
    pairs = [(i, t) for i in range(len(items)) for t in threads]
    raw: dict[tuple[int, int], list[dict]] = {p: [] for p in pairs}
    peaks: list[dict] = []
    total = rounds * (len(pairs) + 1)
    done = 0
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as td:
        work = Path(td)
        for r in range(rounds):
            say(done, total, f"round {r + 1}/{rounds}: matmul peak")
            peaks.append(measure_matmul_peak(work / f"peak-{r}"))
            done += 1
            order = pairs if r % 2 == 0 else list(reversed(pairs))  # alternate direction: drift hits everyone
            for i, t in order:
                it = items[i]
                say(done, total, f"round {r + 1}/{rounds}: {it.label()} x{t}")
                job = {"primary": str(it.primary), "threads": t, "warmup": warmup, "runs": runs,
                       "image": str(image) if image else None, "runtime": runtime}
                raw[(i, t)].append(spawn("bench", job, work / f"r{r}", f"a{i}-t{t}", timeout, threads=t))
                done += 1
        say(done, total, "done")
    peak = max(p["gflops"] for p in peaks)
    end = loadavg()
    if end is not None:
        machine["loadavg_end"] = end
    machine["matmul_peak_gflops"] = round(peak, 2)
    machine["matmul_peak_rounds_gflops"] = [round(p["gflops"], 2) for p in peaks]
    machine["matmul_median_gflops"] = round(statistics.median(p["median_gflops"] for p in peaks), 2)
    machine["matmul"] = {"n": peaks[0]["n"], "dtype": peaks[0]["dtype"], "threads": 1,
                         "calls": sum(p["calls"] for p in peaks),
                         "method": "NumPy float32 GEMM in a subprocess with BLAS limited to 1 thread; "
                                   "peak = fastest of many short calls (an undisturbed one), per round"}
    cores = machine["cores_available"]
    results = [summarize(items[i], t, raw[(i, t)], peak, cores, settings) for i, t in pairs]
    return {
        "schema_version": SCHEMA_VERSION,
        "zoo_version": __version__,
        "timestamp": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine,
        "settings": settings,
        "results": results,
    }
