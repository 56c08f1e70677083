"""`zoo compat`: each artifact in each requested runtime release, each release in its own environment.

For a release folder the golden kit is the evidence (its images and PyTorch outputs, no checkpoint); for
an export folder the parity images, with PyTorch's outputs computed once per model by an isolated
worker here. The runtime environment runs only the artifact (zoo.pipeline.compat_worker) and saves
its outputs; the parity verdict (the same tiers as everywhere) is computed here, in the main
environment. The result goes to DIR/compat.json, beside the manifest and outside its hashes.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.checkpoints.resolve import find_checkpoint
from zoo.exporters import get_target, runtime_names
from zoo.validation.compat import (COMPAT_FILE, SCHEMA, STATUSES, cell_key, options_label, platform_summary, read_compat,
                                   summarize)
from zoo.validation.parity import MIN_EVIDENCE, ParityInput, compare
from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text
from zoo.core.images import image_records, load_batch
from zoo.core.isolation import WarmWorkers, kill_active_workers, run_isolated
from zoo.core.manifest import MANIFEST, Artifact, FileEntry, base_precision, read_manifest, verify_files
from zoo.core.integrity import verify_artifact
from zoo.core.meta import ArtifactMeta, manifest_entry, read_meta, sidecar_path
from zoo.core.platforms import get_platform
from zoo.core.toolchain import canonical, read_lock
from zoo.pipeline.compat_env import (MATRIX_NAMES, EnvSpec, Matrix, dir_bytes, env_state, parse_runtime_specs,
                                     platform_tag, prepare_env)
from zoo.pipeline.compat_platform import Lane, Lanes, find_qemu, platform_state
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
        self.lock = threading.RLock()

    def get(self, s: Subject) -> tuple[str, dict, ParityInput, str]:
        with self.lock:  # lanes run side by side: one computes, the others wait for it
            return self._get(s)

    def _get(self, s: Subject) -> tuple[str, dict, ParityInput, str]:
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
    ev = p.get("evidence") or {}
    return {"passed": bool(p.get("passed")), "tier": base_precision(str(p.get("precision", ""))),
            "matched": d.get("matched"), "reference": d.get("reference"), "extra": d.get("extra"),
            "strict": d.get("strict"),
            "max_abs": {k: v.get("max_abs") for k, v in (p.get("outputs") or {}).items()},
            "failures": list(p.get("failures") or [])[:3],
            **({"evidence": {"images": ev.get("images"), "faces": ev.get("faces"), "strong": bool(ev.get("strong"))}}
               if ev else {})}


@dataclass(frozen=True)
class CellLane:
    """Where a cell ran besides this machine: a platform's CPU model, with an app's runtime options."""

    platform: str
    cpu: str
    options: dict

    def fields(self) -> dict:
        return {"platform": self.platform, "cpu": self.cpu, "options": dict(self.options)}


def _cell(s: Subject, spec: EnvSpec, status: str, message: str | None = None, parity: dict | None = None,
          seconds: float = 0.0, found: str | None = None, lane: CellLane | None = None) -> dict:
    a = s.artifact
    prim = a.file(a.primary)
    return {"artifact": s.label, "model": a.model, "target": a.target, "precision": a.precision, "head": a.head,
            "primary": a.primary, "sha256": prim.sha256 if prim else None,
            **({"min_runtime": a.min_runtime} if a.min_runtime else {}), "runtime": spec.runtime, "package": spec.package, "version": spec.version, "rank": spec.rank,
            **(lane.fields() if lane else {}),
            "status": status, "message": message, "parity": parity, "seconds": round(seconds, 2),
            **({"numpy": found} if found else {})}


def _run_worker(s: Subject, spec: EnvSpec, evidence: "_Evidence", work: Path, name: str, threads: int, timeout: float,
                run_kw: dict, home: str | None = None, options: dict | None = None,
                warm: WarmWorkers | None = None) -> tuple[dict, float, Path]:
    """One isolated worker run of ``s`` in ``spec``'s runtime (``run_kw``: run_isolated's python,
    pythonpath, launcher, env_extra; or a process of ``warm``): (its result, seconds, its folder)."""
    a = s.artifact
    inp = evidence.get(s)[0]
    d = work / _safe(name)
    job = {"target": a.target, "runtime": spec.runtime, "package": spec.package, "module": spec.module,
           "version": spec.version, "meta": a.meta, "primary": str((s.folder / a.primary).resolve()),
           "threads": threads, "input": inp, "stage": str(d / "loaded"), "out_dir": str(d / "out"),
           **({"home": home} if home is not None else {}), **({"options": options} if options else {})}
    t0 = time.monotonic()
    if warm is not None:
        res = warm.run("lane", job, d, timeout, "job", what="runtime")
    else:
        res = run_isolated("zoo.pipeline.compat_worker", [], job, d, timeout, "job", what="runtime", **run_kw)
    return res, time.monotonic() - t0, d


def _failed(res: dict, d: Path) -> tuple[str, str]:
    """(status, message) of a worker that did not run the artifact through."""
    err = str(res.get("error") or "no result")
    stage = res.get("stage")
    if stage == "load" or (stage is None and not (d / "loaded").exists()):
        return "cannot-load", err
    if stage == "env":
        return "error", err
    return "FAIL", err


def _outputs(res: dict) -> dict:
    return {k: ([np.load(p) for p in v] if isinstance(v, list) else np.load(v)) for k, v in res["outputs"].items()}


def _judge(s: Subject, evidence: "_Evidence", got: dict, precision: str, min_evidence: int) -> tuple[str, str | None, dict | None]:
    """(status, message, parity summary) of outputs against the PyTorch reference, at ``precision``'s tier."""
    a = s.artifact
    _, ref, data, _ = evidence.get(s)
    try:
        p = compare(ref, got, data, a.meta["labels"], a.meta.get("prior_count") or 0, precision, min_evidence=min_evidence)
    except (ValueError, IndexError, KeyError) as e:  # outputs of the wrong shape for this model
        return "FAIL", f"outputs do not fit the model: {e}", None
    return ("PASS" if p["passed"] else "FAIL"), (None if p["passed"] else p["failures"][0]), _parity_summary(p)


def _run_one(s: Subject, spec: EnvSpec, python: str, evidence: "_Evidence", work: Path, src: Path,
             threads: int, timeout: float, min_evidence: int) -> dict:
    a = s.artifact
    broken = verify_files(s.folder, a.files)
    if broken:
        return _cell(s, spec, "FAIL", f"{broken[0]} (changed since it was written)")
    res, secs, d = _run_worker(s, spec, evidence, work, f"{a.model}-{a.key.label()}-{spec.package}-{spec.version}",
                               threads, timeout, {"python": python, "pythonpath": [str(src)]})
    if not res.get("ok"):
        status, err = _failed(res, d)
        return _cell(s, spec, status, err, seconds=secs, found=None if status == "error" else res.get("numpy"))
    status, msg, summ = _judge(s, evidence, _outputs(res), a.precision, min_evidence)
    return _cell(s, spec, status, msg, summ, secs, res.get("numpy"))


# ---------------------------------------------------------------------------------------------- other platforms
_TIER_ORDER = ("fp32", "fp16", "int8")


def judged_tier(precision: str, reduced: str | None) -> str:
    """The tier of the arithmetic that ran: the file's, or fp16 where the runtime chose fp16 for a file of
    a stricter tier (an fp32 file under ncnn's ARMv8.2 defaults is judged as fp16)."""
    base = base_precision(precision)
    if reduced and reduced.startswith("fp16") and base in _TIER_ORDER and _TIER_ORDER.index(base) < 1:
        return "fp16"
    return base


def _max_abs(a: dict, b: dict) -> dict:
    out = {}
    for k in ("scores", "boxes", "locations"):
        if k in a and k in b and not isinstance(a[k], list) and np.shape(a[k]) == np.shape(b[k]):
            out[k] = float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
    return out


class _Natives:
    """The same artifact run natively with the same runtime options, once per (file, release, options): what
    each emulated cell is compared with. It runs in the main environment when that holds the release,
    else in the release's own environment when one is ready; else there is no comparison."""

    def __init__(self, cache: Path, evidence: "_Evidence", work: Path, src: Path, threads: int, timeout: float,
                 min_evidence: int):
        self.cache, self.evidence, self.work, self.src = cache, evidence, work, src
        self.threads, self.timeout, self.min_evidence = threads, timeout, min_evidence
        self.done: dict = {}
        self.lock = threading.Lock()

    def where(self, spec: EnvSpec) -> tuple[dict | None, str]:
        native = spec.on("")
        try:
            if importlib.metadata.version(spec.package) == spec.version:
                return {"python": sys.executable, "pythonpath": [str(self.src)]}, "main environment"
        except importlib.metadata.PackageNotFoundError:
            pass
        st = env_state(self.cache, native)
        if st["state"] == "ready":
            return {"python": st["python"], "pythonpath": [str(self.src)]}, f"environment {Path(st['env']).name}"
        return None, (f"no {platform_tag()} environment of {spec.label}: `zoo compat --prepare --platform "
                      f"{spec.platform} --runtime {spec.label}` makes one")

    def get(self, s: Subject, spec: EnvSpec, options: dict) -> dict:
        key = (str(s.folder), s.artifact.primary, spec.label, spec.package, json.dumps(options, sort_keys=True))
        with self.lock:  # one run per key, whichever lane asks first
            return self.done[key] if key in self.done else self._run(key, s, spec, options)

    def _run(self, key: tuple, s: Subject, spec: EnvSpec, options: dict) -> dict:
        run_kw, where = self.where(spec)
        if run_kw is None:
            out = {"status": "unavailable", "message": where}
        else:
            a = s.artifact
            res, secs, d = _run_worker(s, spec, self.evidence, self.work,
                                       f"x86-{a.model}-{a.key.label()}-{spec.package}-{spec.version}-{len(self.done)}",
                                       self.threads, self.timeout, run_kw, home="" if where == "main environment" else None,
                                       options=options)
            if not res.get("ok"):
                status, err = _failed(res, d)
                out = {"status": status, "message": err, "where": where}
            else:
                got = _outputs(res)
                status, msg, summ = _judge(s, self.evidence, got, a.precision, self.min_evidence)
                out = {"status": status, "message": msg, "where": where, "platform": platform_tag(),
                       "parity": summ, "outputs": got, "settings": res.get("settings") or {}}
        self.done[key] = out
        return out


def _not_prepared(spec: EnvSpec) -> str:
    return (f"the {spec.platform} environment of {spec.label} is not prepared: run `zoo compat --prepare --platform "
            f"{spec.platform} --runtime {spec.label}` (only --prepare installs)")


def _platform_cell(s: Subject, spec: EnvSpec, st: dict, lane: Lane, options: dict, evidence: "_Evidence",
                   natives: _Natives, lanes: Lanes, work: Path, threads: int, timeout: float, min_evidence: int) -> dict:
    a = s.artifact
    cl = CellLane(spec.platform, lane.cpu.name, options)
    name = f"{a.model}-{a.key.label()}-{spec.package}-{spec.version}-{lane.cpu.name}-{options_label(options)}"
    res, secs, d = _run_worker(s, spec, evidence, work, name, threads, timeout, {}, home=st["site"], options=options,
                               warm=lanes.warm(st, lane))
    where = {"emulation": lane.emulation,
             "userland": {"name": st["info"].get("userland"), "distribution": st["userland"].get("distribution"),
                          "python": lane.emulation.get("python"), "packages": st["userland"].get("packages", {})}}
    if not res.get("ok"):
        status, err = _failed(res, d)
        return {**_cell(s, spec, status, err, seconds=secs, lane=cl), **where}
    got = _outputs(res)
    settings = res.get("settings") or {}
    reduced = settings.get("reduced")
    tier = judged_tier(a.precision, reduced)
    status, msg, summ = _judge(s, evidence, got, tier if tier != base_precision(a.precision) else a.precision, min_evidence)
    native = natives.get(s, spec, options)
    x86 = {k: v for k, v in native.items() if k not in ("outputs", "settings")}
    if "outputs" in native:
        x86["max_abs"] = _max_abs(got, native["outputs"])
    cell = _cell(s, spec, status, msg, summ, secs, res.get("numpy"), lane=cl)
    cell.update(where)
    cell.update({"settings": settings, "tier": tier, "timing": res.get("timing"), "x86": x86})
    if reduced:
        cell["tier_note"] = f"{spec.runtime} {reduced} on"
    return cell


def _needs_alternative(c: dict, precision: str) -> bool:
    """The runtime's options gave another arithmetic than the file's (fp16 for an fp32 or int8 file), or
    the cell failed: the options that restore it are run too."""
    if c["status"] in ("FAIL", "cannot-load"):
        return True
    reduced = (c.get("settings") or {}).get("reduced")
    return c["status"] == "PASS" and bool(reduced) and base_precision(precision) != "fp16"


_ALT_KEYS = ("options", "status", "message", "tier", "tier_note", "parity", "x86", "seconds", "settings")


def _run_platform(s: Subject, spec: EnvSpec, st: dict, cpus: list[str], evidence: "_Evidence", natives: _Natives,
                  lanes: Lanes, work: Path, threads: int, timeout: float, min_evidence: int, say) -> list[dict]:
    """Every (CPU model, option set) cell of one artifact in one platform environment, with alternatives."""
    a = s.artifact
    sets = s.target.options_for(spec.runtime)
    lanes_of = [(cpu, o) for cpu in cpus for o in sets]
    if st["state"] != "ready":
        msg = st.get("message") or _not_prepared(spec)
        return [_cell(s, spec, "unavailable", msg, lane=CellLane(spec.platform, cpu, o)) for cpu, o in lanes_of]
    broken = verify_files(s.folder, a.files)
    if broken:
        return [_cell(s, spec, "FAIL", f"{broken[0]} (changed since it was written)", lane=CellLane(spec.platform, cpu, o))
                for cpu, o in lanes_of]
    cells = []
    for cpu in cpus:
        try:
            lane = lanes.get(st, spec.platform, cpu)
        except ZooError as e:
            cells += [_cell(s, spec, "error", str(e), lane=CellLane(spec.platform, cpu, o)) for o in sets]
            continue
        done: dict[str, dict] = {}
        for o in sets:
            say(f"{s.label} in {spec.label} on {spec.platform} {cpu} ({options_label(o)}) ...")
            done[json.dumps(o, sort_keys=True)] = c = _platform_cell(s, spec, st, lane, o, evidence, natives, lanes, work,
                                                                    threads, timeout, min_evidence)
            cells.append(c)
        for c in list(cells[-len(sets):]):
            if not _needs_alternative(c, a.precision):
                continue
            alt = s.target.restoring_options(spec.runtime, c["options"])
            if alt is None or alt == c["options"]:
                continue
            k = json.dumps(alt, sort_keys=True)
            if k not in done:
                say(f"{s.label} in {spec.label} on {spec.platform} {cpu} ({options_label(alt)}: the alternative) ...")
                done[k] = _platform_cell(s, spec, st, lane, alt, evidence, natives, lanes, work, threads, timeout, min_evidence)
            c["alternative"] = {key: done[k][key] for key in _ALT_KEYS if key in done[k]}
    return cells


def run_compat(subjects: list[Subject], specs: list[EnvSpec], cache: Path, images: list[Path] | None = None,
               checkpoint: Path | None = None, threads: int = 1, timeout: float = 300.0,
               min_evidence: int = MIN_EVIDENCE, say=lambda msg: None, cpus: list[str] | None = None,
               jobs: int = 1) -> dict:
    """Prepare this machine's environments (creating the missing ones), then run every pair; the result
    document. Specs of another platform (``spec.platform``) run once per CPU model of ``cpus`` (default:
    every model of the platform) and per option set of the runtime, under emulation; their environments
    are only looked up (`zoo compat --prepare` creates them). Each (release, CPU model) is a lane of its
    own warm emulated process; ``jobs`` lanes run side by side (emulation is one core per process)."""
    pairs = plan(subjects, specs)
    if not pairs:
        have = sorted({r for s in subjects for r in s.runtimes()})
        raise ZooError(f"none of the requested runtimes runs these artifacts; their runtimes: {', '.join(have) or 'none'}")
    used: list[EnvSpec] = list(dict.fromkeys(spec for _, spec in pairs))
    qemus = {p: find_qemu(get_platform(p)) for p in dict.fromkeys(s.platform for s in used if s.platform)}
    envs = {spec: (platform_state(cache, spec, qemus[spec.platform]) if spec.platform else prepare_env(cache, spec, say))
            for spec in used}
    models = {spec: cpus or [c.name for c in get_platform(spec.platform).cpus] for spec in used if spec.platform}
    found: dict[tuple, list[dict]] = {}
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zoo-compat-") as td:
        work = Path(td)
        src = _source_dir(work)
        evidence = _Evidence(work, images, checkpoint, say)
        natives = _Natives(cache, evidence, work, src, threads, timeout, min_evidence)
        lanes = Lanes(work, src)

        def lane(spec: EnvSpec, cpu: str) -> None:  # every artifact of one release on one CPU model, in order
            for i, (s, sp) in enumerate(pairs):
                if sp == spec:
                    found[(i, cpu)] = _run_platform(s, spec, envs[spec], [cpu], evidence, natives, lanes, work,
                                                    threads, timeout, min_evidence, say)

        try:
            for i, (s, spec) in enumerate(pairs):  # this machine's releases first, one after another as before
                if spec.platform:
                    continue
                st = envs[spec]
                if st["state"] == "unavailable":
                    found[(i, "")] = [_cell(s, spec, "unavailable", st["message"])]
                    continue
                say(f"{s.label} in {spec.label} ...")
                found[(i, "")] = [_run_one(s, spec, st["python"], evidence, work, src, threads, timeout, min_evidence)]
            todo = [(spec, cpu) for spec in used if spec.platform for cpu in models[spec]]
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1)), thread_name_prefix="lane") as pool:
                for f in [pool.submit(lane, spec, cpu) for spec, cpu in todo]:
                    f.result()
        except BaseException:
            kill_active_workers()  # the lanes' emulated processes: their threads then end at once
            raise
        finally:
            lanes.close()
        sources = sorted({v[3] for v in evidence.cache.values()})
    cells = []
    for i, (_, spec) in enumerate(pairs):  # the order of the plan, each artifact's CPU models in order
        for cpu in (models[spec] if spec.platform else [""]):
            cells += found.get((i, cpu), [])
    environments = {}
    for s in used:
        e = envs[s]
        environments[s.label + (f" ({s.platform})" if s.platform else "")] = {
            "state": e["state"], "requirements": s.requirements,
            **({"platform": s.platform} if s.platform else {}),
            **({"message": e["message"]} if e.get("message") else {}),
            **({"qemu": e["qemu"].version, "userland": (e.get("info") or {}).get("userland")}
               if s.platform and e["state"] == "ready" else {})}
    return {"schema": SCHEMA, "zoo_version": __version__, "python": platform_tag(),
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "evidence": sources, "seconds": round(time.monotonic() - t_all, 1),
            "environments": environments, "results": cells}


def save_compat(doc: dict, subjects: list[Subject]) -> list[Path]:
    """Write (merge into) ``FOLDER/compat.json`` for every folder tested: a cell replaces the one of the
    same artifact file, runtime release, platform, CPU and options (zoo.validation.compat.cell_key); the others
    are kept. A damaged file is replaced."""
    written = []
    for folder in dict.fromkeys(s.folder for s in subjects):
        prims = {s.artifact.primary for s in subjects if s.folder == folder}
        mine = [c for c in doc["results"] if c["primary"] in prims]
        path = folder / COMPAT_FILE
        old, problem = read_compat(path) if path.is_file() else (None, None)
        keep = []
        if old is not None:
            new = {cell_key(c) for c in mine}
            keep = [c for c in old["results"] if cell_key(c) not in new]
        out = {k: v for k, v in doc.items() if k not in ("results", "summary", "platform_summary")}
        out["results"] = keep + mine
        out["summary"] = summarize(out["results"])
        plats = platform_summary(out["results"])
        if plats:
            out["platform_summary"] = plats
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


def main_env_specs(matrix: Matrix, runtimes: list[str]) -> list[EnvSpec]:
    """Each runtime at the release of this environment (`zoo compat --platform`'s default): the installed
    version of its package, else the toolchain lock's pin, else the newest default of the matrix."""
    try:
        lock = read_lock()
    except ZooError:
        lock = {}
    out = []
    for rt in runtimes:
        if rt not in matrix.runtimes:
            continue
        package = matrix.runtimes[rt]["package"]
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = lock.get(canonical(package))
        if version is None:
            defaults = sorted(matrix.default([rt]), key=lambda s: s.sort_key())
            if not defaults:
                continue
            out.append(defaults[-1])
            continue
        out.append(matrix.spec(rt, version))
    return out


def select_platform_specs(matrix: Matrix, runtime_text: str | None, matrix_name: str | None, wanted_runtimes: set[str],
                          platform: str) -> list[EnvSpec]:
    """The releases to run on ``platform``: ``--runtime``/``--matrix`` as on this machine; neither: each
    runtime at the release of this environment."""
    if runtime_text or matrix_name is not None:
        specs = select_specs(matrix, runtime_text, matrix_name, wanted_runtimes)
    else:
        specs = main_env_specs(matrix, sorted(wanted_runtimes))
    return [s.on(platform) for s in specs]


def env_summary(cache: Path, specs: list[EnvSpec]) -> list[dict]:
    return [{"spec": s.label, "package": s.package, **env_state(cache, s)} for s in specs]


def cache_bytes(cache: Path) -> int:
    return dir_bytes(cache) if cache.is_dir() else 0
