"""The typed Python API: what the `zoo` commands do, as functions that return frozen dataclasses.

Every function raises the :class:`zoo.core.errors.ZooError` family for bad input (unknown names, missing
or corrupt files, a folder that is not an export) and prints nothing: what the CLI prints on stderr
(progress, warnings) is returned in ``.warnings`` instead. An artifact that fails its parity is not an
exception: its ``.parity.passed`` is False and the result's ``.passed`` says so.

>>> import zoo
>>> zoo.runtimes()[:2]
('onnxruntime', 'opencv')
>>> zoo.export("slim-320", to="onnxx")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
zoo.core.errors.ZooError: unknown target 'onnxx' (did you mean 'onnx'?); valid targets: onnx, ...

``import zoo`` stays light: ``zoo/__init__.py`` imports this module on first use of one of its names
(``zoo.export``, ``zoo.load``, ...), and this module imports the heavy layers (torch, the runtimes) only
inside the functions that need them.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Union, cast

import numpy as np

from zoo.core.errors import ZooError

__all__ = [
    "Artifact", "BenchResult", "CheckItem", "CheckResult", "CompatResult", "Detection", "Detections", "Detector",
    "DiffResult", "Evidence", "ExportResult", "Failure", "Parity", "ReleaseResult", "VerifyCase", "VerifyResult",
    "ZooError", "bench", "check", "compat", "diff", "export", "load", "release", "runtimes", "targets", "verify",
]

PathLike = Union[str, "os.PathLike[str]"]
Names = Union[str, Sequence[str]]
Image = Union[PathLike, "np.ndarray[Any, Any]"]

#: `zoo detect`'s defaults, so ``Detector.detect`` gives what ``zoo detect --artifact`` prints
SCORE_THRESHOLD, IOU_THRESHOLD, CANDIDATE_SIZE = 0.7, 0.3, 200


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Detections:
    """Face counts of a parity verdict: reference faces (PyTorch), matched, missed and extra ones.
    ``strict`` counts borderline faces (near the score threshold) as misses and extras."""

    reference: int
    matched: int
    missed: int
    extra: int
    passed: bool
    strict: dict[str, float]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Detections:
        d = d or {}
        return cls(reference=int(d.get("reference", 0)), matched=int(d.get("matched", 0)),
                   missed=int(d.get("missed", 0)), extra=int(d.get("extra", 0)), passed=bool(d.get("passed", False)),
                   strict=dict(d.get("strict") or {}))


@dataclass(frozen=True)
class Evidence:
    """What a verdict rests on: images, reference faces (per size bucket), strong or weak."""

    images: int
    faces: int
    by_size: dict[str, int]
    strong: bool
    min_faces: int

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Evidence:
        d = d or {}
        return cls(images=int(d.get("images", 0)), faces=int(d.get("faces", 0)), by_size=dict(d.get("by_size") or {}),
                   strong=bool(d.get("strong", False)), min_faces=int(d.get("min_faces", 0)))


@dataclass(frozen=True)
class Parity:
    """An artifact's parity against PyTorch: the verdict, its detections, its evidence, why it failed.
    ``raw`` is the full record (as in manifest.json)."""

    passed: bool
    detections: Detections
    evidence: Evidence
    failures: tuple[str, ...]
    max_abs: dict[str, float]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Parity:
        d = d or {}
        outs = {k: float(v["max_abs"]) for k, v in (d.get("outputs") or {}).items()
                if isinstance(v, dict) and "max_abs" in v}
        return cls(passed=bool(d.get("passed", False)), detections=Detections.from_dict(d.get("detections")),
                   evidence=Evidence.from_dict(d.get("evidence")), failures=tuple(d.get("failures") or ()),
                   max_abs=outs, raw=dict(d))


@dataclass(frozen=True)
class Artifact:
    """One exported artifact: its primary file, its key (``target/precision/head``), and its parity."""

    path: Path
    key: str
    model: str
    target: str
    precision: str
    head: str
    dynamic: bool
    files: tuple[Path, ...]
    parity: Parity


@dataclass(frozen=True)
class Failure:
    """An artifact that could not be built (converter error, crash, timeout)."""

    model: str
    target: str
    precision: str
    head: str
    error: str


@dataclass(frozen=True)
class ExportResult:
    """What `zoo export` wrote: the folder, its manifest, the artifacts asked for, the builds that failed."""

    out: Path
    manifest: Path
    artifacts: tuple[Artifact, ...]
    failed: tuple[Failure, ...]
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Every build succeeded and every artifact passed parity."""
        return not self.failed and all(a.parity.passed for a in self.artifacts)


@dataclass(frozen=True)
class ReleaseResult(ExportResult):
    """What `zoo release` wrote: the folder, its manifest, every artifact of the release, the failed builds
    (the fields and `passed` of `ExportResult`)."""


@dataclass(frozen=True)
class CheckItem:
    """One artifact re-checked in one runtime (None: its target's own)."""

    artifact: str
    path: Path
    runtime: str | None
    passed: bool
    failures: tuple[str, ...]
    parity: Parity | None


@dataclass(frozen=True)
class CheckResult:
    """`zoo check`: every file's sha256, then each artifact's parity re-run (``raw``: the --json shape)."""

    folder: Path
    passed: bool
    items: tuple[CheckItem, ...]
    file_problems: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class VerifyCase:
    name: str
    passed: bool
    failure: str | None
    runtime: str | None


@dataclass(frozen=True)
class VerifyResult:
    """`zoo verify`: every file's sha256, then the golden kit through each artifact (``raw``: the --json shape)."""

    folder: Path
    passed: bool
    cases: tuple[VerifyCase, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class BenchResult:
    """`zoo bench`: one row per artifact, thread count and runtime (``raw``: the --json shape)."""

    rows: tuple[dict[str, Any], ...]
    machine: dict[str, Any]
    written: tuple[Path, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not any(r.get("error") for r in self.rows)


@dataclass(frozen=True)
class Detection:
    """A face: ``box`` (x1, y1, x2, y2) in the image's pixels, ``score`` in [0, 1], ``label``."""

    box: tuple[float, float, float, float]
    score: float
    label: str


# --------------------------------------------------------------------------- helpers

def _names(value: Names, what: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; empty is an error."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out = [s.strip() for s in items if s.strip()]
    if not out:
        raise ZooError(f"{what} is empty")
    return out


def _images(images: PathLike | None, what: str, warnings: list[str]) -> list[Path] | None:
    from zoo.core.images import collect_readable  # deferred: heavy layers

    return collect_readable(Path(images), what) if images is not None else None


def _paths(value: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path or several -> a list of paths."""
    return [Path(value)] if isinstance(value, (str, os.PathLike)) else [Path(v) for v in value]


def _parity_images(images: PathLike | None, warn: list[str]) -> list[Path]:
    """The photos of --images, or the pinned parity photos (what is missing of them warned into ``warn``)."""
    from zoo.core.images import collect_readable  # deferred: heavy layers

    return collect_readable(Path(images), "--images") if images is not None else _default_images(warn.append)


def _default_images(warn: Callable[[str], None]) -> list[Path]:
    from zoo.core.parity_set import default_images  # deferred: heavy layers

    return list(default_images(warn))


def _discard(_msg: str) -> None:
    """A warning nobody asked for."""


def _artifact(folder: Path, a: Any) -> Artifact:
    return Artifact(path=folder / a.primary, key=a.key.label(), model=a.model, target=a.target, precision=a.precision,
                    head=a.head, dynamic=bool(a.dynamic), files=tuple(folder / f.path for f in a.files),
                    parity=Parity.from_dict(a.parity))


def _failure(f: Any) -> Failure:
    return Failure(model=f.model, target=f.target, precision=f.precision, head=f.head, error=str(f.error))


def _runtimes(runtime: Names | None) -> list[str | None]:
    """``runtime`` as the list of runtimes to run ([None]: each target's own), every name checked."""
    if runtime is None:
        return [None]
    from zoo.exporters import check_runtime_name  # deferred: heavy layers

    return [check_runtime_name(r) for r in dict.fromkeys(_names(runtime, "--runtime"))]


# --------------------------------------------------------------------------- the functions

def targets() -> tuple[str, ...]:
    """The export targets, in registry order (`zoo list`)."""
    from zoo.exporters import target_names  # deferred: heavy layers

    return tuple(target_names())


def runtimes() -> tuple[str, ...]:
    """Every runtime some target runs its artifacts in (the names ``runtime=`` takes)."""
    from zoo.exporters import runtime_names  # deferred: heavy layers

    return tuple(runtime_names())


def export_run(model: str | None, to: Names, precision: Names = "fp32", out: PathLike = "zoo-export", *,
               checkpoint: PathLike | None = None, arch: str | None = None, labels: Names | None = None,
               input_size: str | None = None, head: str | None = None, nms: bool = False, dynamic: bool = False,
               images: PathLike | None = None, calib: PathLike | None = None, threads: int = 1,
               jobs: int | None = None, timeout: float | None = None, keep_float: str = "auto",
               min_evidence: int | None = None, min_runtime: str | None = None,
               say: Callable[[str], None] | None = None, progress: Callable[[str], None] | None = None,
               timings: list[Any] | None = None) -> tuple[ExportResult, Any, list[Any]]:
    """What `zoo export` and :func:`export` run: (the typed result, the manifest written, its artifacts that
    were asked for). ``say``: called with each warning as it comes (the CLI prints them on stderr; they are
    in the result's ``.warnings`` either way); ``progress``: the build's progress lines; ``timings``:
    ``--profile``'s rows, filled in."""
    from zoo.checkpoints.resolve import resolve_model  # deferred: heavy layers
    from zoo.core.manifest import MANIFEST, base_precision  # deferred: heavy layers
    from zoo.core.model.specs import parse_input_size, parse_labels  # deferred: heavy layers
    from zoo.pipeline.build import KEEP_FLOAT, export_model  # deferred: heavy layers
    from zoo.pipeline.plan import make_plan, toolchain_warning  # deferred: heavy layers
    from zoo.validation.parity import MIN_EVIDENCE  # deferred: heavy layers

    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        if say is not None:
            say(msg)

    if keep_float not in KEEP_FLOAT:
        raise ZooError(f"keep_float {keep_float!r} is not one of {', '.join(KEEP_FLOAT)}")
    min_ev = MIN_EVIDENCE if min_evidence is None else int(min_evidence)
    target_list = _names(to, "--to")
    precisions = _names(precision, "--precision")
    img_paths = _images(images, "--images", warnings)
    calib_paths = _images(calib, "--calib", warnings)
    plan = make_plan(target_list, precisions, head, nms, dynamic, min_runtime)  # names checked before any weights are read
    for sk in plan.skipped:
        if sk.get("dynamic") or sk.get("head"):
            warn(f"skipped: {sk['reason']}")
    drift = toolchain_warning(target_list)
    if drift:
        warn(drift)
    labs = None if labels is None else parse_labels(labels if isinstance(labels, str) else ",".join(labels))
    rm = resolve_model(model, Path(checkpoint) if checkpoint is not None else None, arch, labs,
                       parse_input_size(input_size) if input_size is not None else None)
    if checkpoint is not None:
        rm.build("raw")  # a user file: strict key/shape check now
    if img_paths is None:
        img_paths = _default_images(warn)
    folder = Path(out)
    manifest = export_model(
        rm, target_list, precisions, folder, head=head, images=img_paths, calib=calib_paths, threads=threads,
        jobs=jobs or max(1, os.cpu_count() or 1), timeout=timeout, progress=progress, nms=nms,
        options={"keep_float": keep_float} if keep_float != "auto" else None, min_evidence=min_ev,
        timings=timings, dynamic=dynamic, min_runtime=min_runtime,
    )
    requested = {(t, p) for t in target_list for p in precisions}
    built = {(j.target, j.min_runtime) for j in plan.jobs}  # a default build and one for an older runtime are not the same
    mine = [a for a in manifest.artifacts
            if (a.target, base_precision(a.precision)) in requested and (a.target, a.min_runtime) in built
            and a.dynamic == dynamic]
    result = ExportResult(out=folder, manifest=folder / MANIFEST, artifacts=tuple(_artifact(folder, a) for a in mine),
                          failed=tuple(_failure(f) for f in manifest.failed), warnings=tuple(warnings))
    return result, manifest, mine


def export(model: str | None, to: Names, precision: Names = "fp32", out: PathLike = "zoo-export", *,
           checkpoint: PathLike | None = None, arch: str | None = None, labels: Names | None = None,
           input_size: str | None = None, head: str | None = None, nms: bool = False, dynamic: bool = False,
           images: PathLike | None = None, calib: PathLike | None = None, threads: int = 1, jobs: int | None = None,
           timeout: float | None = None, keep_float: str = "auto", min_evidence: int | None = None,
           min_runtime: str | None = None) -> ExportResult:
    """Export ``model`` to the targets ``to`` at each ``precision``, prove every artifact against PyTorch in
    its own runtime, and write ``out/manifest.json`` (what `zoo export` does).

    ``to`` and ``precision`` are a comma list or a sequence of names. Returns the artifacts asked for, each
    with its ``.parity``; builds that failed are in ``.failed``.
    """
    return export_run(model, to, precision, out, checkpoint=checkpoint, arch=arch, labels=labels,
                      input_size=input_size, head=head, nms=nms, dynamic=dynamic, images=images, calib=calib,
                      threads=threads, jobs=jobs, timeout=timeout, keep_float=keep_float,
                      min_evidence=min_evidence, min_runtime=min_runtime)[0]


def release_run(out: PathLike, models: Names | None = None, targets: Names | None = None,
                precisions: Names = "fp32,fp16,int8", *, images: PathLike | None = None,
                calib: PathLike | None = None, jobs: int | None = None, threads: int = 1,
                timeout: float | None = None, min_evidence: int | None = None, shard: str | None = None,
                with_withheld: bool = False, say: Callable[[str], None] | None = None,
                progress: Callable[[str], None] | None = None,
                timings: list[Any] | None = None) -> tuple[ReleaseResult, Any]:
    """What `zoo release` (without --merge) and :func:`release` run: (the typed result, the manifest).
    ``shard``: ``I/N``, one shard of the matrix; ``say``, ``progress``, ``timings``: as :func:`export_run`."""
    from zoo.core.manifest import MANIFEST  # deferred: heavy layers
    from zoo.core.model.specs import MODELS  # deferred: heavy layers
    from zoo.exporters import target_names  # deferred: heavy layers
    from zoo.pipeline.plan import parse_shard, toolchain_warning  # deferred: heavy layers
    from zoo.pipeline.release import release as build_release  # deferred: heavy layers
    from zoo.validation.parity import MIN_EVIDENCE  # deferred: heavy layers

    warnings: list[str] = []
    model_ids = _names(models, "--models") if models is not None else list(MODELS)
    target_list = _names(targets, "--targets") if targets is not None else target_names()
    drift = toolchain_warning(target_list)
    if drift:
        warnings.append(drift)
        if say is not None:
            say(drift)
    folder = Path(out)
    manifest = build_release(
        folder, model_ids, target_list, _names(precisions, "--precisions"), jobs=jobs or max(1, os.cpu_count() or 1),
        images=_images(images, "--images", warnings), calib=_images(calib, "--calib", warnings),
        shard=parse_shard(shard), threads=threads, timeout=timeout, progress=progress,
        min_evidence=MIN_EVIDENCE if min_evidence is None else int(min_evidence), timings=timings,
        with_withheld=with_withheld)
    result = ReleaseResult(out=folder, manifest=folder / MANIFEST,
                           artifacts=tuple(_artifact(folder, a) for a in manifest.artifacts),
                           failed=tuple(_failure(f) for f in manifest.failed), warnings=tuple(warnings))
    return result, manifest


def release(out: PathLike, models: Names | None = None, targets: Names | None = None,
            precisions: Names = "fp32,fp16,int8", *, images: PathLike | None = None, calib: PathLike | None = None,
            jobs: int | None = None, threads: int = 1, timeout: float | None = None,
            min_evidence: int | None = None, with_withheld: bool = False) -> ReleaseResult:
    """Build the release matrix into ``out`` with parity, model cards, golden kit and REPORT.md (`zoo release`);
    resumable: a second call reuses what is already there. ``with_withheld``: also the flavours withheld from
    the default matrix (measured to fail their tier)."""
    return release_run(out, models, targets, precisions, images=images, calib=calib, jobs=jobs, threads=threads,
                       timeout=timeout, min_evidence=min_evidence, with_withheld=with_withheld)[0]


def check_raw(folder: PathLike, images: PathLike | None = None, checkpoint: PathLike | None = None, *,
              threads: int = 1, runtime: Names | None = None, min_evidence: int | None = None,
              warnings: list[str] | None = None) -> dict[str, Any]:
    """`zoo check`'s --json shape (one runtime: as before; several: each result names its runtime)."""
    from zoo.core.images import collect_readable  # deferred: heavy layers
    from zoo.core.manifest import read_manifest  # deferred: heavy layers
    from zoo.exporters import select_runtimes  # deferred: heavy layers
    from zoo.pipeline.check import check as run_check  # deferred: heavy layers
    from zoo.validation.parity import MIN_EVIDENCE  # deferred: heavy layers

    warn = warnings if warnings is not None else []
    rts = _runtimes(runtime)
    min_ev = MIN_EVIDENCE if min_evidence is None else int(min_evidence)
    if images is not None:
        img_paths = collect_readable(Path(images), "--images")
    else:
        read_manifest(Path(folder))  # a folder that is not an export is refused before the photos are looked for
        img_paths = _default_images(warn.append)
    if len(rts) == 1:
        return run_check(Path(folder), img_paths, Path(checkpoint) if checkpoint else None, threads=threads,
                         runtime=rts[0], min_evidence=min_ev)
    names = [r for r in rts if r is not None]
    select_runtimes(read_manifest(Path(folder)).artifacts, names)  # a runtime list that runs nothing: refused now
    parts: list[dict[str, Any] | None] = []
    for rt in names:
        try:
            parts.append(run_check(Path(folder), img_paths, Path(checkpoint) if checkpoint else None, threads=threads,
                                   runtime=rt, min_evidence=min_ev))
        except ZooError as e:
            if "no artifact here runs in" not in str(e):
                raise
            parts.append(None)
    return merge_runtime_results(names, parts, "results")


def merge_runtime_results(names: list[str], parts: list[dict[str, Any] | None], key: str) -> dict[str, Any]:
    """One result for several runtimes: ``key``'s entries of each part, each naming its ``runtime``; the other
    keys of the first part that ran; ``runtimes`` and ``left_out`` (per runtime)."""
    ran = [p for p in parts if p is not None]
    out = dict(ran[0])
    out[key] = [{**r, "runtime": rt} for rt, p in zip(names, parts) if p is not None for r in p[key]]
    out["file_problems"] = list(dict.fromkeys(x for p in ran for x in p.get("file_problems", [])))
    out["passed"] = all(p["passed"] for p in ran)
    out["runtime"] = ",".join(names)
    out["runtimes"] = names
    out["left_out"] = {rt: (p["left_out"] if p is not None else None) for rt, p in zip(names, parts)}
    return out


def check(folder: PathLike, images: PathLike | None = None, checkpoint: PathLike | None = None, *, threads: int = 1,
          runtime: Names | None = None, min_evidence: int | None = None) -> CheckResult:
    """Re-verify every file's sha256 in an export folder, then re-run parity of every artifact against PyTorch
    (`zoo check`). ``runtime``: one name or several (each artifact is run once per named runtime it offers)."""
    raw = check_raw(folder, images, checkpoint, threads=threads, runtime=runtime, min_evidence=min_evidence)
    root = Path(raw["folder"])
    root = root if root.is_dir() else root.parent
    items = tuple(CheckItem(artifact=r["artifact"], path=root / r["primary"], runtime=r.get("runtime", raw.get("runtime")),
                            passed=bool(r["passed"]), failures=tuple(f for f in r["failures"] if f),
                            parity=Parity.from_dict(r["parity"]) if r.get("parity") else None)
                  for r in raw["results"])
    return CheckResult(folder=Path(folder), passed=bool(raw["passed"]), items=items,
                       file_problems=tuple(raw["file_problems"]), raw=raw)


def verify_raw(folder: PathLike, *, threads: int = 1, runtime: Names | None = None,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`zoo verify`'s --json shape (several runtimes: each case names its runtime)."""
    from zoo.core.manifest import read_manifest  # deferred: heavy layers
    from zoo.exporters import select_runtimes  # deferred: heavy layers
    from zoo.pipeline.verify import verify as run_verify  # deferred: heavy layers

    rts = _runtimes(runtime)
    if len(rts) == 1:
        return run_verify(Path(folder), threads=threads, progress=progress, runtime=rts[0])
    names = [r for r in rts if r is not None]
    select_runtimes(read_manifest(Path(folder)).artifacts, names)
    parts: list[dict[str, Any] | None] = []
    for rt in names:
        try:
            parts.append(run_verify(Path(folder), threads=threads, progress=progress, runtime=rt))
        except ZooError as e:
            if "no artifact here runs in" not in str(e):
                raise
            parts.append(None)
    out = merge_runtime_results(names, parts, "cases")
    seen: set[str] = set()  # a file case is the same in every runtime: once
    cases = []
    for c in out["cases"]:
        if c["name"].startswith("file "):
            if c["name"] in seen:
                continue
            seen.add(c["name"])
            c = {k: v for k, v in c.items() if k != "runtime"}  # a file's sha256 is no runtime's
        cases.append(c)
    out["cases"] = cases
    return out


def verify(folder: PathLike, *, threads: int = 1, runtime: Names | None = None) -> VerifyResult:
    """Re-check every file's sha256 of a release and re-run its golden kit through every artifact (`zoo verify`)."""
    raw = verify_raw(folder, threads=threads, runtime=runtime)
    cases = tuple(VerifyCase(name=c["name"], passed=bool(c["passed"]), failure=c.get("failure"),
                             runtime=None if c["name"].startswith("file ") else c.get("runtime", raw.get("runtime")))
                  for c in raw["cases"])
    return VerifyResult(folder=Path(folder), passed=bool(raw["passed"]), cases=cases, raw=raw)


def bench(paths: PathLike | Sequence[PathLike], *, threads: int | Sequence[int] = 1, warmup: int = 10, runs: int = 50,
          rounds: int = 3, timeout: float = 300.0, runtime: Names | None = None, save: bool = False) -> BenchResult:
    """Latency, load time and memory of each artifact in its own runtime and process (`zoo bench`); ``save``
    writes DIR/bench.json for each release folder."""
    from zoo.exporters import select_runtimes  # deferred: heavy layers
    from zoo.validation.bench import collect_items, save_bench  # deferred: heavy layers

    if warmup < 0 or runs < 1 or rounds < 1 or timeout <= 0:
        raise ZooError("warmup must be >= 0 and runs, rounds, timeout > 0")
    plist = _paths(paths)
    tlist = [threads] if isinstance(threads, int) else [int(t) for t in threads]
    if not tlist or min(tlist) < 1:
        raise ZooError("threads must be >= 1")
    items = collect_items(plist)
    rts = _runtimes(runtime)
    names = [r for r in rts if r is not None]
    raw = run_bench_runtimes(items, names, threads=tlist, warmup=warmup, runs=runs, rounds=rounds, timeout=timeout,
                             progress=None)
    written = tuple(save_bench(raw, select_runtimes(items, names)[0] if names else items)) if save else ()
    return BenchResult(rows=tuple(raw["results"]), machine=dict(raw["machine"]), written=written, raw=raw)


def run_bench_runtimes(items: list[Any], names: list[str], **kw: Any) -> dict[str, Any]:
    """`zoo bench` over the runtimes ``names`` ([]: each target's own): each artifact once per named runtime it
    offers; each result names its runtime (None: the target's own)."""
    from zoo.exporters import runs_in, select_runtime, select_runtimes  # deferred: heavy layers
    from zoo.validation.bench import run_bench  # deferred: heavy layers

    if len(names) <= 1:
        rt = names[0] if names else None
        sel, _ = select_runtime(items, rt)
        res: dict[str, Any] = run_bench(sel, runtime=rt, **kw)
        if rt is not None:
            for r in res["results"]:
                r["runtime"] = rt
        return res
    select_runtimes(items, names)  # every name checked; a list that runs nothing refused
    out: dict[str, Any] | None = None
    for rt in names:
        sel = runs_in(items, rt)
        if not sel:
            continue
        res = run_bench(sel, runtime=rt, **kw)
        for r in res["results"]:
            r["runtime"] = rt
        if out is None:
            out = res
            out["settings"]["runtime"] = ",".join(names)
        else:
            out["results"] += res["results"]
    assert out is not None  # select_runtimes refused a list that runs nothing
    return out


@dataclass(frozen=True)
class DiffResult:
    """`zoo diff` of one artifact: PyTorch layer by layer against its runtime (``raw``: the --json object)."""

    artifact: Path
    runtime: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class CompatResult:
    """`zoo compat`: each artifact in each runtime release (``results``: rows with artifact, runtime, version,
    status; ``raw``: the --json document)."""

    results: tuple[dict[str, Any], ...]
    written: tuple[Path, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return all(r.get("status") in ("PASS", "unavailable") for r in self.results)


def diff_raw(artifacts: PathLike | Sequence[PathLike], images: PathLike | None = None,
             checkpoint: PathLike | None = None, *, runtime: str | None = None, threads: int = 1,
             atol: float | None = None, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """`zoo diff`'s full results, one per artifact: ``{"result": the --json shape, "extra": what its table
    prints}``. ``warnings`` receives what the CLI prints on stderr (no --images and the pinned photos missing)."""
    from zoo.exporters import check_one_runtime  # deferred: heavy layers
    from zoo.validation.diff import diff as run_diff  # deferred: heavy layers

    rt = check_one_runtime(runtime)
    paths = _paths(artifacts)
    imgs = _parity_images(images, warnings if warnings is not None else [])
    return list(run_diff(paths, imgs, Path(checkpoint) if checkpoint is not None else None, runtime=rt,
                         threads=threads, atol=atol))


def diff(artifacts: PathLike | Sequence[PathLike], images: PathLike | None = None, checkpoint: PathLike | None = None,
         *, runtime: str | None = None, threads: int = 1, atol: float | None = None) -> tuple[DiffResult, ...]:
    """Compare artifacts with PyTorch layer by layer (`zoo diff`): one result per artifact."""
    paths = _paths(artifacts)
    res = diff_raw(paths, images, checkpoint, runtime=runtime, threads=threads, atol=atol)
    return tuple(DiffResult(artifact=Path(r["result"].get("artifact", p)), runtime=str(r["result"].get("runtime")),
                            raw=r["result"]) for p, r in zip(paths, res))


def compat_run(paths: PathLike | Sequence[PathLike], runtime: str | None = None, *, matrix: str | None = None,
               images: PathLike | None = None, checkpoint: PathLike | None = None, threads: int = 1,
               timeout: float = 300.0, save: bool = False, cpus: Sequence[str] | None = None,
               platform: str | None = None, jobs: int = 1, say: Callable[[str], None] | None = None,
               warnings: list[str] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """`zoo compat`'s run: the --json document and the compat.json files written (``save``). ``platform``
    and ``cpus``: run each artifact in its runtime's build for that platform, emulated, on those CPU
    models; ``say`` receives the progress lines the CLI prints on stderr (creating environments first), and
    ``warnings`` what it warns of (no --images and the pinned photos missing)."""
    from zoo.exporters import runtime_names  # deferred: heavy layers
    from zoo.pipeline.compat import collect, run_compat, save_compat, select_platform_specs, select_specs  # deferred
    from zoo.pipeline.compat_env import compat_dir, load_matrix  # deferred: heavy layers
    from zoo.validation.parity import MIN_EVIDENCE  # deferred: heavy layers

    say = say or _discard
    plist = _paths(paths)
    subjects = collect(plist) if plist else []
    wanted = {r for s in subjects for r in s.runtimes()} if subjects else set(runtime_names())
    m = load_matrix()
    specs = (select_platform_specs(m, runtime, matrix, wanted, platform) if platform
             else select_specs(m, runtime, matrix, wanted))
    if not subjects:
        raise ZooError("give release or export folders (or artifact files) to test, or --prepare")
    img_paths = None
    if any(not s.release for s in subjects):
        img_paths = _parity_images(images, warnings if warnings is not None else [])
    doc: dict[str, Any] = run_compat(subjects, specs, compat_dir(), images=img_paths,
                                     checkpoint=Path(checkpoint) if checkpoint is not None else None, threads=threads,
                                     timeout=timeout, min_evidence=MIN_EVIDENCE, say=say,
                                     cpus=list(cpus) if cpus is not None else None, jobs=jobs)
    written = list(save_compat(doc, subjects)) if save else []
    return doc, written


def compat(paths: PathLike | Sequence[PathLike], runtime: str | None = None, *, matrix: str | None = None,
           images: PathLike | None = None, checkpoint: PathLike | None = None, threads: int = 1,
           timeout: float = 300.0, save: bool = False) -> CompatResult:
    """Run each artifact's golden kit (or the parity images) in each runtime release (`zoo compat`); a missing
    runtime environment is created first (pip install of that runtime into $ZOO_COMPAT_DIR)."""
    doc, written = compat_run(paths, runtime, matrix=matrix, images=images, checkpoint=checkpoint, threads=threads,
                              timeout=timeout, save=save)
    return CompatResult(results=tuple(doc["results"]), written=tuple(written), raw=doc)


class Detector:
    """An exported artifact, checked and loaded in this process: ``.detect(image)`` returns faces.

    Made by :func:`load`. A context manager: ``with zoo.load(path) as det: det.detect("photo.jpg")``;
    leaving the block (or :meth:`close`) releases the runtime.
    """

    def __init__(self, runner: Any, artifact: Path, score_threshold: float = SCORE_THRESHOLD,
                 iou_threshold: float = IOU_THRESHOLD, candidate_size: int = CANDIDATE_SIZE, top_k: int = -1):
        self._runner = runner
        self.artifact = artifact
        self.meta = runner.meta
        self.runtime: str = runner.name
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.candidate_size, self.top_k = candidate_size, top_k
        self._open = False

    def __enter__(self) -> Detector:
        self._ensure_open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _ensure_open(self) -> None:
        if not self._open:
            self._runner.__enter__()
            self._open = True

    def close(self) -> None:
        """Release the runtime (idempotent)."""
        if self._open:
            self._open = False
            self._runner.__exit__(None, None, None)

    def _read(self, image: Image) -> Any:
        from zoo.core.images import read_bgr  # deferred: heavy layers

        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ZooError(f"an image array must be HxWx3 BGR uint8, not {image.dtype} {tuple(image.shape)}")
            return image
        img = read_bgr(Path(image))
        if img is None:
            raise ZooError(f"cannot read image {image}")
        return img

    def detect(self, image: Image | Sequence[Image]) -> Any:
        """Faces in ``image`` (a path, or an HxWx3 BGR uint8 array): a list of :class:`Detection` in the
        image's pixels; for a list of images, one such list per image."""
        if isinstance(image, (list, tuple)):
            return [self._detect_one(self._read(i)) for i in image]
        return self._detect_one(self._read(cast(Image, image)))

    def _detect_one(self, img: Any) -> list[Detection]:
        from zoo.core.model.processing import postprocess, preprocess  # deferred: heavy layers
        from zoo.validation.parity import detections_from_rows  # deferred: heavy layers

        self._ensure_open()
        h, w = img.shape[:2]
        size = tuple(self.meta.input_size)
        try:
            o = self._runner.infer(preprocess(img, *size))
        except ZooError:
            raise
        except Exception as e:  # noqa: BLE001 - a runtime's own exception: one clear line naming the file
            raise ZooError(f"{self.artifact}: {self._runner.name} failed: {type(e).__name__}: {str(e)[:300]}") from None
        if "detections" in o:
            dets = sorted(detections_from_rows(o["detections"][0], w, h, self.meta.labels), key=lambda d: -d.score)
            dets = dets[:self.top_k] if self.top_k > 0 else dets
        else:
            dets = postprocess(o["scores"][0], o["boxes"][0], w, h, self.meta.labels, self.score_threshold,
                               self.iou_threshold, self.candidate_size, self.top_k)
        return [Detection(box=tuple(float(v) for v in d.box), score=float(d.score), label=str(d.label))  # type: ignore[arg-type]
                for d in dets]


def load(artifact: PathLike, runtime: str | None = None, threads: int = 1, *, verify: bool = True,
         score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> Detector:
    """Check an exported artifact as ``zoo detect --artifact`` does (its files against the sha256 its manifest or
    sidecar records, then one run in an isolated worker), then load it in this process as a :class:`Detector`."""
    return Detector(checked_runner(artifact, runtime, threads, verify=verify), Path(artifact), score_threshold,
                    iou_threshold)


def checked_runner(artifact: PathLike, runtime: str | None = None, threads: int = 1, *, verify: bool = True) -> Any:
    """The runner of an exported artifact, checked as `zoo detect --artifact` and :func:`load` check it: its
    files against the sha256 its manifest or sidecar records (unless ``verify`` is off), then one run in an
    isolated worker (a probe), so a file that crashes or hangs its runtime, or that its metadata does not
    describe, is one clear ZooError. Not loaded yet: use it as ``with runner:``."""
    from zoo.exporters import check_runtime_name, load_runner  # deferred: heavy layers
    from zoo.pipeline.probe import probe_artifact  # deferred: heavy layers

    rt = check_runtime_name(runtime) if runtime is not None else None
    path = Path(artifact)
    runner = load_runner(path, threads=threads, runtime=rt, verify=verify)
    probe_artifact(path, runner.meta, runtime=rt, threads=threads, check_head=verify)
    return runner


def _iter_names() -> Iterator[str]:  # for zoo.__dir__
    yield from __all__
