"""Export targets: a registry. Adding a target = one package under `exporters/` + one line in `_MODULES`
(+ one pip extra in pyproject.toml); the CLI, plans, parity, release and the test matrix pick it up."""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path

from zoo.exporters.base import ExportRequest, ExportResult, Target
from zoo.core.errors import ZooError, nearest
from zoo.core.integrity import verify_artifact
from zoo.core.manifest import PRECISIONS
from zoo.core.meta import read_meta
from zoo.core.runtime import Runner

#: target name -> "module:Class"
_MODULES = {
    "onnx": "zoo.exporters.onnx:OnnxTarget",
    "mnn": "zoo.exporters.mnn:MnnTarget",
    "ncnn": "zoo.exporters.ncnn:NcnnTarget",
    "tflite": "zoo.exporters.tflite:TfliteTarget",
    "saved_model": "zoo.exporters.tflite:SavedModelTarget",
    "tfjs": "zoo.exporters.tflite:TfjsTarget",
    "caffe": "zoo.exporters.caffe:CaffeTarget",
    "openvino": "zoo.exporters.openvino:OpenvinoTarget",
}


def _plugins() -> dict[str, str]:
    """Extra targets from ZOO_TARGET_PLUGINS="name=module:Class,..." (out-of-tree targets, fault injection)."""
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
    reg = _registry()
    if name not in reg:
        raise ZooError(f"unknown target {name!r}{nearest(name, reg)}; valid targets: {', '.join(reg)}")
    mod, cls = reg[name].split(":")
    return getattr(importlib.import_module(mod), cls)()


def target_names() -> list[str]:
    return list(_registry())


def all_targets() -> list[Target]:
    return [get_target(n) for n in _registry()]


def runtime_names() -> list[str]:
    """Every runtime some target registers, in registry order."""
    return list(dict.fromkeys(r for t in all_targets() for r in t.runtimes))


def check_runtime_name(runtime: str) -> str:
    """``runtime`` if some target registers it; otherwise an error naming the ones that exist."""
    names = runtime_names()
    if runtime not in names:
        raise ZooError(f"unknown runtime {runtime!r}{nearest(runtime, names)}; available runtimes: {', '.join(names)}")
    return runtime


def check_one_runtime(runtime: str | None) -> str | None:
    """A validated runtime of a command that runs one (detect, diff): a comma list is refused, an unknown name
    is an error naming the ones that exist; None stays None."""
    if runtime is not None and "," in runtime:
        raise ZooError(f"--runtime {runtime!r}: this command runs one runtime; give one name "
                       "(check, verify and bench take a comma list)")
    return None if runtime is None else check_runtime_name(runtime)


def select_runtime(items: list, runtime: str | None) -> tuple[list, list]:
    """(the artifacts ``runtime`` runs, the ones it leaves out); all of them when None.

    ``items`` have ``target``, ``precision`` and ``head`` (manifest artifacts, bench items). An unknown
    runtime, or one that runs none of them, is an error naming what exists.
    """
    if runtime is None:
        return list(items), []
    check_runtime_name(runtime)
    keep = [a for a in items if get_target(a.target).offers_runtime(runtime, a.precision, a.head)]
    if items and not keep:
        raise ZooError(f"no artifact here runs in {runtime!r}: the runtimes of its targets are "
                       f"{', '.join(sorted({r for a in items for r in get_target(a.target).runtimes}))}")
    kept = {id(a) for a in keep}
    return keep, [a for a in items if id(a) not in kept]


def runs_in(items: list, runtime: str) -> list:
    """The items (artifacts, bench items) ``runtime`` runs (a known runtime name)."""
    return [a for a in items if get_target(a.target).offers_runtime(runtime, a.precision, a.head)]


def select_runtimes(items: list, runtimes: list[str]) -> tuple[list, list]:
    """(the artifacts one of ``runtimes`` runs, the ones none of them runs), every name checked first;
    a list that runs none of them is an error naming the runtimes that exist here."""
    for r in runtimes:
        check_runtime_name(r)
    kept = {id(a) for r in runtimes for a in runs_in(items, r)}
    if items and not kept:
        raise ZooError(f"no artifact here runs in {', '.join(map(repr, runtimes))}: the runtimes of its targets are "
                       f"{', '.join(sorted({r for a in items for r in get_target(a.target).runtimes}))}")
    return [a for a in items if id(a) in kept], [a for a in items if id(a) not in kept]


def load_runner(primary: Path, threads: int = 1, runtime: str | None = None, verify: bool = False) -> Runner:
    """The runner for an artifact's primary file, from its metadata.

    ``verify``: first check the artifact's files against the sha256 its folder's manifest.json or
    its sidecar records (a ZooError naming the first file that differs)."""
    if verify:
        verify_artifact(Path(primary))
    meta = read_meta(Path(primary))
    target = get_target(meta.target)
    target.require()
    return target.runner(Path(primary), meta, threads=threads, runtime=runtime)


__all__ = ["PRECISIONS", "ExportRequest", "ExportResult", "Target", "get_target", "target_names", "all_targets",
           "runtime_names", "check_runtime_name", "select_runtime", "select_runtimes", "runs_in", "load_runner"]
