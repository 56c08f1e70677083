"""`zoo compat`: each artifact in each requested runtime release, each release in its own environment.

For a release folder the golden kit is the evidence (its images and PyTorch outputs, no checkpoint); for
an export folder the parity images, with PyTorch's outputs computed once per model by an isolated
worker here. The runtime environment runs only the artifact (zoo.pipeline.compat_worker) and saves
its outputs; the parity verdict (the same tiers as everywhere) is computed here, in the main
environment. The result goes to DIR/compat.json, beside the manifest and outside its hashes.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.checkpoints.resolve import find_checkpoint
from zoo.exporters import get_target, runtime_names
from zoo.validation.compat import COMPAT_FILE, SCHEMA, STATUSES, read_compat, summarize
from zoo.validation.parity import MIN_EVIDENCE, ParityInput, compare
from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text
from zoo.core.images import image_records, load_batch
from zoo.core.isolation import run_isolated
from zoo.core.manifest import MANIFEST, Artifact, FileEntry, base_precision, read_manifest, verify_files
from zoo.core.integrity import verify_artifact
from zoo.core.meta import ArtifactMeta, manifest_entry, read_meta, sidecar_path
from zoo.pipeline.compat_env import (MATRIX_NAMES, EnvSpec, Matrix, dir_bytes, env_state, parse_runtime_specs,
                                     platform_tag, prepare_env)
from zoo.pipeline.golden import image_rels, reference_dir
from zoo.pipeline.reference import TIMEOUT as REFERENCE_TIMEOUT, read_reference, reference_job
from zoo.pipeline.worker import run_worker

__all__ = ["COMPAT_FILE", "STATUSES", "collect", "plan", "run_compat", "save_compat"]

class Subject:
    """One artifact of one folder (an export's or a release's)."""

    def __init__(self, folder: Path, artifact: Artifact, release: bool):
        self.folder, self.artifact, self.release = folder, artifact, release
        self.prefix = ""  # the folder's name, when another folder has an artifact of the same name

    @property
    def label(self) -> str:
        a = self.artifact
        return f"{self.prefix}{a.model} {a.key.label()}"

    @property
    def target(self):
        return get_target(self.artifact.target)

    def runtimes(self) -> list[str]:
        a = self.artifact
        return [r for r in self.target.runtimes if self.target.offers_runtime(r, a.precision, a.head)]


def collect(paths: list[Path]) -> list[Subject]:
    """The artifacts named: every artifact of a folder's manifest, or an artifact's primary file."""
    out: list[Subject] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ZooError(f"not found: {p}")
        if p.is_dir() or p.name == MANIFEST:
            folder = p if p.is_dir() else p.parent
            m = read_manifest(folder)
            out += [Subject(folder, a, m.is_release) for a in m.artifacts]
            continue
        found = manifest_entry(p)
        if found:
            folder, art = found
            out.append(Subject(folder, art, read_manifest(folder).is_release))
        elif sidecar_path(p).is_file():  # a lone artifact described by its sidecar (hashes checked first)
            if not verify_artifact(p):
                raise ZooError(f"{p}: its sidecar {sidecar_path(p).name} records no file hashes")
            meta = read_meta(p)
            art = Artifact(model=meta.model_id, target=meta.target, precision=meta.precision, head=meta.head,
                           layout=meta.layout, primary=p.name, files=[FileEntry.of(p.parent, p.name)], meta=meta.to_dict())
            out.append(Subject(p.parent, art, False))
        else:
            raise ZooError(f"{p} is neither listed in a manifest.json above it nor described by a sidecar "
                           f"{sidecar_path(p).name}: give its export or release folder")
    if not out:
        raise ZooError("no artifacts to test: the folders' manifests list none")
    seen: dict[str, set] = {}
    for s in out:
        seen.setdefault(s.label, set()).add(s.folder)
    for s in out:
        if len(seen[s.label]) > 1:
            s.prefix = f"{s.folder.name}: "
    out = list({(str(s.folder), s.artifact.primary): s for s in out}.values())  # one run per file
    return out


def plan(subjects: list[Subject], specs: list[EnvSpec]) -> list[tuple[Subject, EnvSpec]]:
    """Every (artifact, runtime release) pair whose runtime runs the artifact."""
    return [(s, spec) for spec in specs for s in subjects if spec.runtime in s.runtimes()]


def _source_dir(work: Path) -> Path:
    """A folder holding only our one root package, ``zoo`` (a link): the environment's import path, so
    nothing of this environment's site-packages comes along, even when the zoo is installed there. In a
    source checkout, zoo/__init__.py finds zoo.exporters, zoo.checkpoints and zoo.validation beside the
    link's target."""
    package = Path(__file__).resolve().parents[1]  # .../zoo
    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "zoo").exists():
        (src / "zoo").symlink_to(package, target_is_directory=True)
    return src


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100]


class _Evidence:
    """Inputs and PyTorch reference outputs per model (and folder): the golden kit of a release, or the
    parity images with a reference computed once by an isolated PyTorch worker."""

    def __init__(self, work: Path, images: list[Path] | None, checkpoint: Path | None, say):
        self.work, self.images, self.checkpoint, self.say = work, images, checkpoint, say
        self.cache: dict = {}

    def get(self, s: Subject) -> tuple[str, dict, ParityInput, str]:
        a = s.artifact
        key = (str(s.folder), a.model, tuple(a.meta["input_size"]))
        if key in self.cache:
            return self.cache[key]
        d = self.work / _safe(f"ev-{len(self.cache)}-{a.model}")
        d.mkdir(parents=True, exist_ok=True)
        if s.release:
            m = read_manifest(s.folder)
            imgs = [s.folder / p for p in image_rels([f.path for f in m.files])]
            if not imgs:
                raise ZooError(f"{s.folder}: the manifest lists no golden kit (an unfinished release?)")
            bad = verify_files(s.folder, [f for f in m.files if f.path.startswith("golden/")])
            if bad:
                raise ZooError(f"the golden kit of {s.folder} is damaged: {bad[0]}")
            ref = {p.stem: np.load(p) for p in sorted(reference_dir(s.folder, a.model).glob("*.npy"))}
            source = f"golden kit ({len(imgs)} images)"
        else:
            if not self.images:
                raise ZooError(f"{s.folder} is an export folder: parity images are needed (--images)")
            imgs = list(self.images)
            ref = self._reference(s, imgs, d)
            source = f"parity images ({len(imgs)})"
        x, names, sizes = load_batch([Path(p) for p in imgs], *a.meta["input_size"])
        data = ParityInput(x, [Path(n).name for n in names], sizes, [r["sha256"] for r in image_records(names)])
        np.save(d / "input.npy", x)
        self.cache[key] = (str(d / "input.npy"), ref, data, source)
        return self.cache[key]

    def _reference(self, s: Subject, imgs: list[Path], d: Path) -> dict:
        model = read_manifest(s.folder).model if (s.folder / MANIFEST).is_file() else None
        sha = (model or {}).get("checkpoint_sha256") or s.artifact.meta.get("checkpoint_sha256", "")
        ckpt = find_checkpoint(sha, self.checkpoint)
        # the PyTorch reference of every export and check (zoo.pipeline.reference): one worker, cached
        refs, job = reference_job(str(Path(ckpt).resolve()), sha, s.artifact.meta, ["raw"], [str(p) for p in imgs])
        if job is not None:
            self.say(f"{s.artifact.model}: PyTorch reference on {len(imgs)} parity images ...")
            res = run_worker(job, d, REFERENCE_TIMEOUT, "reference")
            if not res.get("ok"):
                raise ZooError(f"the PyTorch reference of {s.artifact.model} failed: {res.get('error')}")
        key, path = refs["raw"]
        meta = ArtifactMeta.from_dict(s.artifact.meta)
        out = read_reference(Path(path), key, "raw", len(imgs), meta.prior_count, meta.num_classes)
        if out is None:
            raise ZooError(f"the PyTorch reference of {s.artifact.model} could not be read back from {path}")
        return out


def _parity_summary(p: dict) -> dict:
    d = p.get("detections") or {}
    return {"passed": bool(p.get("passed")), "tier": base_precision(str(p.get("precision", ""))),
            "matched": d.get("matched"), "reference": d.get("reference"), "extra": d.get("extra"),
            "strict": d.get("strict"),
            "max_abs": {k: v.get("max_abs") for k, v in (p.get("outputs") or {}).items()},
            "failures": list(p.get("failures") or [])[:3]}


def _cell(s: Subject, spec: EnvSpec, status: str, message: str | None = None, parity: dict | None = None,
          seconds: float = 0.0, found: str | None = None) -> dict:
    a = s.artifact
    prim = a.file(a.primary)
    return {"artifact": s.label, "model": a.model, "target": a.target, "precision": a.precision, "head": a.head,
            "primary": a.primary, "sha256": prim.sha256 if prim else None,
            **({"min_runtime": a.min_runtime} if a.min_runtime else {}), "runtime": spec.runtime, "package": spec.package, "version": spec.version, "rank": spec.rank,
            "status": status, "message": message, "parity": parity, "seconds": round(seconds, 2),
            **({"numpy": found} if found else {})}


def _run_one(s: Subject, spec: EnvSpec, python: str, evidence: _Evidence, work: Path, src: Path,
             threads: int, timeout: float, min_evidence: int) -> dict:
    a = s.artifact
    broken = verify_files(s.folder, a.files)
    if broken:
        return _cell(s, spec, "FAIL", f"{broken[0]} (changed since it was written)")
    inp, ref, data, _ = evidence.get(s)
    name = _safe(f"{a.model}-{a.key.label()}-{spec.package}-{spec.version}")
    d = work / name
    job = {"target": a.target, "runtime": spec.runtime, "package": spec.package, "module": spec.module,
           "version": spec.version, "meta": a.meta, "primary": str((s.folder / a.primary).resolve()),
           "threads": threads, "input": inp, "stage": str(d / "loaded"), "out_dir": str(d / "out")}
    t0 = time.monotonic()
    res = run_isolated("zoo.pipeline.compat_worker", [], job, d, timeout, "job", what="runtime",
                       python=python, pythonpath=[str(src)])
    secs = time.monotonic() - t0
    if not res.get("ok"):
        err = str(res.get("error") or "no result")
        stage = res.get("stage")
        if stage == "load" or (stage is None and not (d / "loaded").exists()):
            return _cell(s, spec, "cannot-load", err, seconds=secs, found=res.get("numpy"))
        if stage == "env":
            return _cell(s, spec, "error", err, seconds=secs)
        return _cell(s, spec, "FAIL", err, seconds=secs, found=res.get("numpy"))
    outs = res["outputs"]
    got = {k: ([np.load(p) for p in v] if isinstance(v, list) else np.load(v)) for k, v in outs.items()}
    try:
        p = compare(ref, got, data, a.meta["labels"], a.meta.get("prior_count") or 0, a.precision, min_evidence=min_evidence)
    except (ValueError, IndexError, KeyError) as e:  # outputs of the wrong shape for this model
        return _cell(s, spec, "FAIL", f"outputs do not fit the model: {e}", seconds=secs)
    summ = _parity_summary(p)
    return _cell(s, spec, "PASS" if p["passed"] else "FAIL", None if p["passed"] else p["failures"][0],
                 summ, secs, res.get("numpy"))


def run_compat(subjects: list[Subject], specs: list[EnvSpec], cache: Path, images: list[Path] | None = None,
               checkpoint: Path | None = None, threads: int = 1, timeout: float = 300.0,
               min_evidence: int = MIN_EVIDENCE, say=lambda msg: None) -> dict:
    """Prepare the environments (creating the missing ones), then run every pair; the result document."""
    pairs = plan(subjects, specs)
    if not pairs:
        have = sorted({r for s in subjects for r in s.runtimes()})
        raise ZooError(f"none of the requested runtimes runs these artifacts; their runtimes: {', '.join(have) or 'none'}")
    used: list[EnvSpec] = list(dict.fromkeys(spec for _, spec in pairs))
    envs = {spec: prepare_env(cache, spec, say) for spec in used}
    cells = []
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zoo-compat-") as td:
        work = Path(td)
        src = _source_dir(work)
        evidence = _Evidence(work, images, checkpoint, say)
        for s, spec in pairs:
            st = envs[spec]
            if st["state"] == "unavailable":
                cells.append(_cell(s, spec, "unavailable", st["message"]))
                continue
            say(f"{s.label} in {spec.label} ...")
            cells.append(_run_one(s, spec, st["python"], evidence, work, src, threads, timeout, min_evidence))
        sources = sorted({v[3] for v in evidence.cache.values()})
    return {"schema": SCHEMA, "zoo_version": __version__, "python": platform_tag(),
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "evidence": sources, "seconds": round(time.monotonic() - t_all, 1),
            "environments": {s.label: {"state": envs[s]["state"], "requirements": s.requirements,
                                       **({"message": envs[s]["message"]} if envs[s].get("message") else {})}
                             for s in used},
            "results": cells}


def save_compat(doc: dict, subjects: list[Subject]) -> list[Path]:
    """Write (merge into) ``FOLDER/compat.json`` for every folder tested: a cell replaces the one of the
    same artifact file and runtime release; the others are kept. A damaged file is replaced."""
    written = []
    for folder in dict.fromkeys(s.folder for s in subjects):
        prims = {s.artifact.primary for s in subjects if s.folder == folder}
        mine = [c for c in doc["results"] if c["primary"] in prims]
        path = folder / COMPAT_FILE
        old, problem = read_compat(path) if path.is_file() else (None, None)
        keep = []
        if old is not None:
            key = lambda c: (c["primary"], c["runtime"], c["package"], c["version"])  # noqa: E731
            new = {key(c) for c in mine}
            keep = [c for c in old["results"] if key(c) not in new]
        out = {k: v for k, v in doc.items() if k not in ("results", "summary")}
        out["results"] = keep + mine
        out["summary"] = summarize(out["results"])
        atomic_write_text(path, json.dumps(out, indent=1) + "\n")
        written.append(path)
    return written


def select_specs(matrix: Matrix, runtime_text: str | None, matrix_name: str | None, wanted_runtimes: set[str]) -> list[EnvSpec]:
    """The runtime releases to test: ``--runtime`` entries, plus ``--matrix default`` for the runtimes
    of the artifacts (default when neither is given)."""
    specs: list[EnvSpec] = []
    if runtime_text:
        specs += parse_runtime_specs(runtime_text, matrix, runtime_names())
    if matrix_name is not None or not runtime_text:
        name = matrix_name or "default"
        if name not in MATRIX_NAMES:
            raise ZooError(f"unknown --matrix {name!r}; known: {', '.join(MATRIX_NAMES)}")
        specs += matrix.default(sorted(wanted_runtimes))
    return list(dict.fromkeys(specs))


def env_summary(cache: Path, specs: list[EnvSpec]) -> list[dict]:
    return [{"spec": s.label, "package": s.package, **env_state(cache, s)} for s in specs]


def cache_bytes(cache: Path) -> int:
    return dir_bytes(cache) if cache.is_dir() else 0
