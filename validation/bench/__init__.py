"""`zoo bench`: latency, load time and memory of artifacts, each in its own runtime and process.

    items = collect_items([Path("release")])            # a release folder, a manifest.json, or artifact files
    result = run_bench(items, threads=[1, 2], warmup=10, runs=50, rounds=3)
    save_bench(result, items)                           # writes <folder>/bench.json for every release folder

Every (artifact, thread count) is measured in a fresh interpreter
(``python -m zoo.validation.bench.worker``), one at a time, so one runtime's
imports, thread pools or allocator cannot skew another. Rounds interleave:
round r measures every artifact once (alternating direction), so slow drift of a
shared machine spreads over all artifacts, and the spread of the per-round
medians is reported.

items: what to measure; cost: MACs and parameters of the PyTorch model (cached);
machine: CPU, cores and the single-core float32 GEMM roofline; spawn: starting a
worker; stats: percentiles and result rows; run: the rounds; store: bench.json.
"""
from zoo.validation.bench.cost import cost_for_meta, model_cost
from zoo.validation.bench.items import BenchItem, collect_items
from zoo.validation.bench.run import parse_threads, run_bench
from zoo.validation.bench.store import BENCH_FILE, read_bench, save_bench

__all__ = ["BENCH_FILE", "BenchItem", "collect_items", "cost_for_meta", "model_cost", "parse_threads", "read_bench",
           "run_bench", "save_bench"]
