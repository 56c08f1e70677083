"""Statistics of a benchmark: percentiles, and one result row from the rounds of one (artifact, threads)."""
from __future__ import annotations

import statistics

from zoo.validation.bench.cost import cost_for_meta
from zoo.validation.bench.items import BenchItem


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _r(v, nd=3):
    return None if v is None else round(float(v), nd)


def summarize(item: BenchItem, threads: int, rounds: list[dict], peak_gflops: float | None, cores: int,
              settings: dict) -> dict:
    """One result row from the rounds' raw worker results of one (artifact, threads)."""
    base = {
        "model": item.model, "target": item.target, "precision": item.precision, "head": item.head,
        "threads": threads, "primary": item.rel or item.display, "path": item.display,
        "size_bytes": item.size_bytes, "sha256": item.sha256,
    }
    if item.meta.get("dynamic"):  # beside its fixed twin in one run: told apart (fixed rows keep their shape)
        base["dynamic"] = True
    cost = cost_for_meta(item.meta)
    base.update({"macs": cost["macs"], "params": cost["params"]})
    good = [r for r in rounds if r.get("ok")]
    errors = [r.get("error", "unknown error") for r in rounds if not r.get("ok")]
    if not good:
        return {**base, "error": errors[0] if errors else "not measured", "errors": errors}
    lat = [v for r in good for v in r["latencies_ms"]]
    p50_rounds = [percentile(r["latencies_ms"], 50) for r in good]
    p50 = percentile(lat, 50)
    med_round = statistics.median(p50_rounds)
    spread = (max(p50_rounds) - min(p50_rounds)) / med_round * 100.0 if len(p50_rounds) > 1 and med_round > 0 else None
    gflops = 2.0 * cost["macs"] / (p50 / 1e3) / 1e9 if cost["macs"] and p50 > 0 else None
    eff_cores = max(1, min(threads, cores))
    with_base = [r for r in good if r.get("base_rss_mb") is not None]
    with_util = [r["cpu_util"] for r in good if r.get("cpu_util") is not None]
    cpu = [v for r in good for v in r.get("cpu_ms", [])]
    out = {
        **base,
        "runtime": good[0].get("runtime"),
        "p50_ms": _r(p50), "p90_ms": _r(percentile(lat, 90)), "p99_ms": _r(percentile(lat, 99)),
        "mean_ms": _r(statistics.fmean(lat)), "min_ms": _r(min(lat)), "max_ms": _r(max(lat)),
        "std_ms": _r(statistics.pstdev(lat)),
        "p50_rounds_ms": [_r(v) for v in p50_rounds],
        "spread_pct": _r(spread, 1),
        "init_ms": _r(statistics.median(r["init_ms"] for r in good)),
        "init_rounds_ms": [_r(r["init_ms"]) for r in good],
        "cold_init_ms": _r(statistics.median(r["cold_init_ms"] for r in good)),
        "first_infer_ms": _r(statistics.median(r["first_infer_ms"] for r in good)),
        "peak_rss_mb": _r(max(r["peak_rss_mb"] for r in good), 1),
        "runtime_rss_mb": _r(max(r["peak_rss_mb"] - r["base_rss_mb"] for r in with_base), 1) if with_base else None,
        "base_rss_mb": _r(min(r["base_rss_mb"] for r in with_base), 1) if with_base else None,
        "cpu_p50_ms": _r(percentile(cpu, 50)) if cpu else None,
        "cpu_util": _r(statistics.median(with_util), 2) if with_util else None,
        "gflops": _r(gflops, 2),
        "roofline_ratio": _r(gflops / (peak_gflops * eff_cores), 4) if gflops and peak_gflops else None,
        "single_core_ratio": _r(gflops / peak_gflops, 4) if gflops and peak_gflops else None,
        "samples": len(lat), "rounds": len(good),
        "warmup": settings["warmup"], "runs": settings["runs"],
    }
    if good[0].get("timed_in"):  # a runtime timed in its own process (the web runtimes' Node worker)
        out["timed_in"] = good[0]["timed_in"]
    if errors:
        out["errors"] = errors
    return out
