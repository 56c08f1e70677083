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
    "mnn": "exporters.mnn:MnnTarget",
    "ncnn": "exporters.ncnn:NcnnTarget",
    "tflite": "exporters.tflite:TfliteTarget",
    "saved_model": "exporters.tflite:SavedModelTarget",
    "caffe": "exporters.caffe:CaffeTarget",
}


def _plugins() -> dict[str, str]:
    """Extra targets from ZOO_TARGET_PLUGINS="name=module:Class,..." (out-of-tree targets, fault injection)."""
    import os

    out = {}
    for item in filter(None, (s.strip() for s in os.environ.get("ZOO_TARGET_PLUGINS", "").split(","))):
        name, _, spec = item.partition("=")
        if not spec or ":" not in spec:
            raise ZooError(f"bad ZOO_TARGET_PLUGINS entry {item!r}: expected name=module:Class")
        out[name.strip()] = spec.strip()
    return out


def _registry() -> dict[str, str]:
    return {**_MODULES, **_plugins()}


@lru_cache(maxsize=None)
def get_target(name: str) -> Target:
    from zoo.registry import nearest

    reg = _registry()
    if name not in reg:
        raise ZooError(f"unknown target {name!r}{nearest(name, reg)}; valid targets: {', '.join(reg)}")
    mod, cls = reg[name].split(":")
    return getattr(importlib.import_module(mod), cls)()


def target_names() -> list[str]:
    return list(_registry())


def all_targets() -> list[Target]:
    return [get_target(n) for n in _registry()]


def load_runner(primary: Path, threads: int = 1, runtime: str | None = None):
    """The runner for an artifact's primary file, from its metadata."""
    from zoo.meta import read_meta

    meta = read_meta(Path(primary))
    target = get_target(meta.target)
    target.require()
    return target.runner(Path(primary), meta, threads=threads, runtime=runtime)


__all__ = ["PRECISIONS", "ExportRequest", "ExportResult", "Target", "get_target", "target_names", "all_targets", "load_runner"]
