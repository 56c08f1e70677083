"""bench.json: saving a benchmark beside each release folder's manifest, and reading it back."""
from __future__ import annotations

import json
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
    return data
