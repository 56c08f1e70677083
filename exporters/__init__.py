"""Export targets: a registry. Adding a target = one module + one entry in `_MODULES`."""
from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path

from exporters.base import PRECISIONS, ExportRequest, ExportResult, Target
from zoo.errors import ZooError

#: target name -> "module:Class"
_MODULES = {
    "onnx": "exporters.onnx:OnnxTarget",
}


@lru_cache(maxsize=None)
def get_target(name: str) -> Target:
    from zoo.registry import nearest

    if name not in _MODULES:
        raise ZooError(f"unknown target {name!r}{nearest(name, _MODULES)}; valid targets: {', '.join(_MODULES)}")
    mod, cls = _MODULES[name].split(":")
    return getattr(importlib.import_module(mod), cls)()


def target_names() -> list[str]:
    return list(_MODULES)


def all_targets() -> list[Target]:
    return [get_target(n) for n in _MODULES]


def load_runner(primary: Path, threads: int = 1, runtime: str | None = None):
    """The runner for an artifact's primary file, from its metadata."""
    from zoo.meta import read_meta

    meta = read_meta(Path(primary))
    target = get_target(meta.target)
    target.require()
    return target.runner(Path(primary), meta, threads=threads, runtime=runtime)


__all__ = ["PRECISIONS", "ExportRequest", "ExportResult", "Target", "get_target", "target_names", "all_targets", "load_runner"]
