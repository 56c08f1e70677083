"""`zoo bench`: latency, load time and memory of artifacts, each in its own runtime and process.

    items = collect_items([Path("release")])            # a release folder, a manifest.json, or artifact files
    result = run_bench(items, threads=[1, 2], warmup=10, runs=50, rounds=3)
    save_bench(result, items)                           # writes <folder>/bench.json for every release folder

Every (artifact, thread count) is measured in a fresh interpreter
(``python -m validation._bench_worker``), one at a time, so one runtime's
imports, thread pools or allocator cannot skew another. Rounds interleave:
round r measures every artifact once (alternating direction), so slow drift of a
shared machine spreads over all artifacts, and the spread of the per-round
medians is reported.

Compute cost (MACs, parameters) comes from the PyTorch model (conv MACs counted
with forward hooks for the artifact's input size); the roofline is this
machine's single-core float32 GEMM throughput, measured with NumPy in a
subprocess limited to one BLAS thread.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from zoo.errors import ZooError

BENCH_FILE = "bench.json"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT = 300.0
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class BenchItem:
    """One artifact to measure."""

    model: str
    target: str
    precision: str
    head: str
    primary: Path  # absolute path of the file a runtime opens
    display: str  # how it is named in output (folder/relative or the path given)
    meta: dict
    size_bytes: int  # the artifact's model files, metadata sidecar excluded
    files: list[str] = field(default_factory=list)
    folder: Path | None = None  # the release folder it belongs to (bench.json goes there)
    rel: str | None = None  # primary relative to folder
    sha256: str | None = None  # of the primary file

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.target, self.precision, self.head)

    def label(self) -> str:
        return f"{self.model} {self.target}/{self.precision}/{self.head}"


# --------------------------------------------------------------------------- inputs

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


def _sidecar_rel(primary_rel: str) -> str:
    from zoo.meta import sidecar_path

    return str(sidecar_path(Path(primary_rel)))


def _model_files(files: list[dict], primary_rel: str) -> list[dict]:
    """The files that make up the model: everything but the JSON metadata sidecar."""
    side = _sidecar_rel(primary_rel)
    return [f for f in files if f["path"] != side]


def _items_from_manifest(folder: Path, manifest: dict) -> list[BenchItem]:
    arts = manifest.get("artifacts") or []
    if not arts:
        raise ZooError(f"{folder / 'manifest.json'} lists no artifacts: nothing to benchmark")
    top = manifest.get("model") or {}
    out = []
    for a in arts:
        primary = folder / a["primary"]
        if not primary.is_file():
            raise ZooError(f"artifact file missing: {primary} (listed in {folder / 'manifest.json'}; run `zoo check {folder}`)")
        files = _model_files(a.get("files", []), a["primary"])
        sha = next((f.get("sha256") for f in a.get("files", []) if f["path"] == a["primary"]), None)
        out.append(BenchItem(
            model=a.get("model") or a.get("meta", {}).get("model_id") or top.get("id", "?"),
            target=a["target"], precision=a["precision"], head=a["head"],
            primary=primary.resolve(), display=str(folder / a["primary"]), meta=a.get("meta") or {},
            size_bytes=sum(int(f.get("bytes", 0)) for f in files), files=[f["path"] for f in files],
            folder=folder, rel=a["primary"], sha256=sha,
        ))
    return out


def _suffix_map() -> dict[str, list]:
    from exporters import all_targets

    m: dict[str, list] = {}
    for t in all_targets():
        for i, s in enumerate(t.suffixes):
            m.setdefault(s.lower(), []).append((t, i))
    return m


def _item_from_file(path: Path) -> BenchItem:
    from exporters import get_target
    from zoo.fsutil import sha256_file
    from zoo.meta import read_meta

    smap = _suffix_map()
    suffix = path.suffix.lower()
    if suffix not in smap:
        known = ", ".join(sorted(smap))
        raise ZooError(f"unknown file type {path.name!r}: expected a release folder, a manifest.json or a model file ({known})")
    primary = path
    for t, i in smap[suffix]:
        if i > 0:  # a companion file (weights of a two-file format): bench its primary
            cand = path.with_suffix(t.suffixes[0])
            if cand.is_file():
                primary = cand
                break
    if primary is path and all(i > 0 for _, i in smap[suffix]):
        raise ZooError(f"{path.name} is the companion of a model file that is not beside it (expected "
                       f"{' or '.join(path.with_suffix(t.suffixes[0]).name for t, _ in smap[suffix])})")
    meta = read_meta(primary)
    target = get_target(meta.target)
    parts = []
    for s in target.suffixes:
        p = primary.with_suffix(s)
        if p.is_file():
            parts.append(p)
    if primary not in parts:
        parts.insert(0, primary)
    return BenchItem(
        model=meta.model_id, target=meta.target, precision=meta.precision, head=meta.head,
        primary=primary.resolve(), display=str(primary), meta=meta.to_dict(),
        size_bytes=sum(p.stat().st_size for p in parts), files=[p.name for p in parts],
        folder=None, rel=None, sha256=sha256_file(primary),
    )


def collect_items(paths: list[Path]) -> list[BenchItem]:
    """Artifacts named by release folders, manifest.json files or artifact files (in that order, no duplicates)."""
    from exporters.plan import read_manifest

    if not paths:
        raise ZooError("nothing to benchmark: give a release folder or artifact files")
    items: list[BenchItem] = []
    for p in map(Path, paths):
        if p.is_dir():
            items += _items_from_manifest(p, read_manifest(p))
        elif p.is_file() and p.name == "manifest.json":
            items += _items_from_manifest(p.parent, read_manifest(p))
        elif p.is_file():
            items.append(_item_from_file(p))
        else:
            raise ZooError(f"not found: {p}")
    seen, unique = set(), []
    for it in items:
        if it.primary not in seen:
            seen.add(it.primary)
            unique.append(it)
    return unique


# --------------------------------------------------------------------------- compute cost

def _cost_cache_path() -> Path | None:
    """A small JSON cache of model costs in the user cache, keyed by the network code's hash."""
    try:
        from checkpoints.loader import cache_dir

        return cache_dir().parent / "model_cost.json"
    except Exception:  # noqa: BLE001 - no cache is fine
        return None


@lru_cache(maxsize=None)
def model_cost(arch: str, num_classes: int, width: int, height: int) -> dict:
    """Conv multiply-accumulates for one W x H image, and the parameter count, of the PyTorch model.

    MACs per Conv2d = output elements x (in_channels / groups) x kh x kw, counted
    with forward hooks at the real feature-map sizes (BatchNorm, activations,
    softmax and box decoding are not counted: they are a rounding error).
    Cached per (arch, classes, W, H) in memory and in the user cache (keyed by
    the hash of zoo/nets.py, so a changed network is recounted).
    """
    key = f"{arch}-{int(num_classes)}-{int(width)}x{int(height)}"
    cache = _cost_cache_path()
    version = _nets_source_hash()
    if cache is not None:
        try:
            data = json.loads(cache.read_text())
            hit = data.get(version, {}).get(key) if isinstance(data, dict) else None
            if hit and isinstance(hit.get("macs"), int) and isinstance(hit.get("params"), int):
                return {"macs": hit["macs"], "params": hit["params"]}
        except (OSError, ValueError, AttributeError):
            pass
    cost = _count_cost(arch, num_classes, width, height)
    if cache is not None:
        try:
            from zoo.fsutil import atomic_write_text

            try:
                data = json.loads(cache.read_text())
                data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                data = {}
            data = {version: {**data.get(version, {}), key: cost}}  # older network versions are dropped
            atomic_write_text(cache, json.dumps(data, indent=1, sort_keys=True) + "\n")
        except (ZooError, OSError):
            pass
    return cost


def _nets_source_hash() -> str:
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("zoo.nets")  # the file, without importing torch
    try:
        return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]
    except (OSError, TypeError, AttributeError):
        return "unknown"


def _count_cost(arch: str, num_classes: int, width: int, height: int) -> dict:
    import torch

    from zoo.nets import UltraFace

    net = UltraFace(arch, int(num_classes), int(width), int(height), head="raw").eval()
    macs = [0]

    def hook(mod, _inp, out):
        kh, kw = mod.kernel_size
        macs[0] += int(out[0].numel()) * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, int(height), int(width)))
    finally:
        for h in handles:
            h.remove()
    return {"macs": macs[0], "params": int(sum(p.numel() for p in net.parameters()))}


def cost_for_meta(meta: dict) -> dict:
    try:
        w, h = meta["input_size"]
        return model_cost(meta["arch"], len(meta["labels"]), int(w), int(h))
    except (KeyError, ValueError, TypeError):
        return {"macs": None, "params": None}


# --------------------------------------------------------------------------- subprocesses

def _spawn(mode: str, job: dict, work: Path, name: str, timeout: float, env_extra: dict) -> dict:
    from zoo.isolation import run_isolated

    return run_isolated("validation._bench_worker", [mode], job, work, timeout, name, env_extra, what="runtime")


def measure_matmul_peak(n: int = 512, seconds: float = 0.3, work: Path | None = None, timeout: float = 120.0) -> dict:
    """Single-core float32 GEMM GFLOP/s of this machine (NumPy, one BLAS thread, in a subprocess)."""
    env = {v: "1" for v in _THREAD_VARS}
    with tempfile.TemporaryDirectory(prefix="zoo-peak-") as td:
        res = _spawn("peak", {"n": n, "seconds": seconds}, Path(work or td), "peak", timeout, env)
    if not res.get("ok"):
        raise ZooError(f"could not measure the matrix-multiply peak: {res.get('error')}")
    return res


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd") if f in have]
    except OSError:
        pass
    return []


def machine_info() -> dict:
    import numpy as np

    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_available": available,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_start": load,
    }


# --------------------------------------------------------------------------- statistics

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
        "runtime_rss_mb": _r(max(r["peak_rss_mb"] - r["base_rss_mb"] for r in good if r.get("base_rss_mb") is not None), 1)
        if any(r.get("base_rss_mb") is not None for r in good) else None,
        "base_rss_mb": _r(min(r["base_rss_mb"] for r in good if r.get("base_rss_mb") is not None), 1)
        if any(r.get("base_rss_mb") is not None for r in good) else None,
        "cpu_p50_ms": _r(percentile([v for r in good for v in r.get("cpu_ms", [])], 50))
        if any(r.get("cpu_ms") for r in good) else None,
        "cpu_util": _r(statistics.median(r["cpu_util"] for r in good if r.get("cpu_util") is not None), 2)
        if any(r.get("cpu_util") is not None for r in good) else None,
        "gflops": _r(gflops, 2),
        "roofline_ratio": _r(gflops / (peak_gflops * eff_cores), 4) if gflops and peak_gflops else None,
        "single_core_ratio": _r(gflops / peak_gflops, 4) if gflops and peak_gflops else None,
        "samples": len(lat), "rounds": len(good),
        "warmup": settings["warmup"], "runs": settings["runs"],
    }
    if errors:
        out["errors"] = errors
    return out


# --------------------------------------------------------------------------- the benchmark

def run_bench(
    items: list[BenchItem],
    threads: list[int] = (1,),
    warmup: int = 10,
    runs: int = 50,
    rounds: int = 3,
    timeout: float = DEFAULT_TIMEOUT,
    progress=None,
    image: Path | None = None,
) -> dict:
    """Measure every item x thread count in fresh worker processes, ``rounds`` interleaved rounds.

    ``progress(done, total, label)`` is called before each measurement and once at the end.
    Returns ``{"schema_version", "zoo_version", "machine", "settings", "results": [...]}``;
    a result with an ``error`` key was not measured (crash, timeout, runtime error).
    """
    from zoo import __version__

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
    pairs = [(i, t) for i in range(len(items)) for t in threads]
    raw: dict[tuple[int, int], list[dict]] = {p: [] for p in pairs}
    peaks: list[dict] = []
    total = rounds * (len(pairs) + 1)
    done = 0
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as td:
        work = Path(td)
        for r in range(rounds):
            say(done, total, f"round {r + 1}/{rounds}: matmul peak")
            peaks.append(measure_matmul_peak(work=work / f"peak-{r}"))
            done += 1
            order = pairs if r % 2 == 0 else list(reversed(pairs))  # alternate direction: drift hits everyone
            for i, t in order:
                it = items[i]
                say(done, total, f"round {r + 1}/{rounds}: {it.label()} x{t}")
                job = {"primary": str(it.primary), "threads": t, "warmup": warmup, "runs": runs,
                       "image": str(image) if image else None}
                env = {v: str(t) for v in _THREAD_VARS}
                raw[(i, t)].append(_spawn("bench", job, work / f"r{r}", f"a{i}-t{t}", timeout, env))
                done += 1
        say(done, total, "done")
    peak = max(p["gflops"] for p in peaks)
    try:
        machine["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
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


def save_bench(result: dict, items: list[BenchItem]) -> list[Path]:
    """Write ``<folder>/bench.json`` (atomically) for every release folder among the items.

    Each file holds the machine, settings and the results of that folder's
    artifacts only, with ``primary`` relative to the folder.
    """
    from zoo.fsutil import atomic_write_text

    written = []
    folders: dict[Path, set[str]] = {}
    for it in items:
        if it.folder is not None:
            folders.setdefault(it.folder, set()).add(it.display)
    for folder, displays in folders.items():
        mine = [{k: v for k, v in r.items() if k != "path"} for r in result["results"] if r.get("path") in displays]
        doc = {**{k: v for k, v in result.items() if k != "results"}, "results": mine}
        path = folder / BENCH_FILE
        atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written


def read_bench(path: Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"no {path.name} at {path}: run `zoo bench` first") from None
    except json.JSONDecodeError as e:
        raise ZooError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ZooError(f"{path} is not a bench result (no 'results' list)")
    return data
