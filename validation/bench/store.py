"""bench.json: saving a benchmark beside each release folder's manifest, and reading it back."""
from __future__ import annotations

import json
import math
from pathlib import Path

from zoo.validation.bench.items import BenchItem
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text

BENCH_FILE = "bench.json"


def save_bench(result: dict, items: list[BenchItem]) -> list[Path]:
    """Write ``<folder>/bench.json`` (atomically) for every release folder among the items.

    Each file holds the machine, settings and the results of that folder's
    artifacts only, with ``primary`` relative to the folder.
    """
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
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ZooError(f"{path} is not a bench result (no 'results' list)")
    problem = bench_problem(data)
    if problem:
        raise ZooError(f"{path} is damaged: {problem}; run `zoo bench` again")
    return data


_TEXT = ("model", "target", "precision", "head", "primary", "runtime", "sha256", "error")
_LISTS = ("p50_rounds_ms", "init_rounds_ms")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _row_problem(r, i: int) -> str | None:
    if not isinstance(r, dict):
        return f"results[{i}] is not an object"
    for k, v in r.items():
        if k in _TEXT:
            if not isinstance(v, str) or len(v) > 2000:
                return f"results[{i}].{k} must be text"
        elif k == "threads":
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                return f"results[{i}].threads must be a thread count"
        elif k in _LISTS:
            if not isinstance(v, list) or not all(x is None or _number(x) for x in v):
                return f"results[{i}].{k} must be a list of numbers"
        elif k.endswith(("_ms", "_mb", "_ratio", "_pct", "_bytes")) or k in ("gflops", "macs", "params", "samples",
                                                                              "rounds", "cpu_util", "runs", "warmup"):
            if v is not None and not _number(v):
                return f"results[{i}].{k} must be a number"
    for k in ("model", "target", "precision", "head"):
        if k in r and not r[k]:
            return f"results[{i}].{k} is empty"
    return None


def bench_problem(data: dict) -> str | None:
    """What is wrong with a bench document's shape (None: nothing): every row an object whose numbers
    are numbers and whose names are text, the machine and settings objects (a report reads them all)."""
    for k in ("machine", "settings"):
        if data.get(k) is not None and not isinstance(data[k], dict):
            return f"{k!r} must be an object"
    m = data.get("machine") or {}
    for k, v in m.items():
        if k in ("matmul_peak_gflops", "matmul_median_gflops") and v is not None and not _number(v):
            return f"machine.{k} must be a number"
        if k.startswith("cores") and v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            return f"machine.{k} must be a count"
        if k in ("cpu", "platform", "python", "machine", "numpy") and v is not None and not isinstance(v, str):
            return f"machine.{k} must be text"
        if k == "cpu_flags" and not (isinstance(v, list) and all(isinstance(f, str) for f in v)):
            return "machine.cpu_flags must be a list of text"
    if data.get("timestamp") is not None and not isinstance(data["timestamp"], str):
        return "'timestamp' must be text"
    threads = (data.get("settings") or {}).get("threads")
    if threads is not None and not (isinstance(threads, list) and all(isinstance(t, int) for t in threads)):
        return "settings.threads must be a list of thread counts"
    for i, r in enumerate(data["results"]):
        problem = _row_problem(r, i)
        if problem:
            return problem
    return None
