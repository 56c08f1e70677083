"""Build the artifacts of one model: ONNX first (others read it), each job in an isolated
worker with a timeout, files placed atomically, up-to-date artifacts reused; `zoo export`."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import CancelledError
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from zoo.checkpoints.resolve import ResolvedModel
from zoo.exporters import get_target, target_names
from zoo.validation.parity import MIN_EVIDENCE, RULES, grade, shift_applies
from zoo.core.version import __version__
from zoo.core.fsutil import ensure_writable_dir, sha256_file
from zoo.core.model.priors import dynamic_info
from zoo.core.model.sensitivity import KEEP_RATIO, MAX_FLOAT_PARAMS
from zoo.core.images import default_calibration
from zoo.core.parity_set import default_images
from zoo.core.manifest import (
    Artifact,
    ArtifactKey,
    Failure,
    Manifest,
    base_precision,
    file_entries,
    existing_manifest,
    verify_files,
    write_manifest,
)
from zoo.core.isolation import WarmWorkers, kill_active_workers
from zoo.core.schedule import PriorityPool
from zoo.pipeline.analysis import analyse as analyse_sensitivity
from zoo.pipeline.plan import Job, Plan, make_plan
from zoo.pipeline.reference import TIMEOUT as REFERENCE_TIMEOUT, reference_job, shift_head
from zoo.pipeline.worker import prestart_export_worker, run_worker, warm_workers

FILE_MODE = 0o644
#: --keep-float: "auto" runs the model-level sensitivity analysis for int8, "none" keeps no layer float
KEEP_FLOAT = ("auto", "none")


def inputs_sha256(resolved: ResolvedModel, job: Job, images: list[str], calib: list[str], options: dict) -> str:
    """What an artifact depends on: checkpoint, model facts, options, images, tool versions, our version."""
    t = get_target(job.target)
    facts = {
        "checkpoint": resolved.checkpoint_sha256, "model": resolved.describe(),
        "job": [job.target, job.precision, job.head] + (["dynamic"] if job.dynamic else [])
        + ([job.min_runtime] if job.min_runtime else []),
        "images": [sha256_file(Path(p)) for p in images],
        "calib": [sha256_file(Path(p)) for p in calib] if base_precision(job.precision) == "int8" else [],
        "options": options, "tools": t.tool_versions(), "zoo": __version__, "parity": RULES,
        "int8": {"keep_ratio": KEEP_RATIO, "max_float_params": MAX_FLOAT_PARAMS} if base_precision(job.precision) == "int8" else {},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def artifact_verifies(out: Path, art: Artifact) -> bool:
    return not verify_files(out, art.files)


def build_artifacts(
    resolved: ResolvedModel,
    plan: Plan,
    out: Path,
    images: list[str],
    calib: list[str],
    options: dict | None = None,
    threads: int = 1,
    jobs: int = 1,
    timeout: float | None = None,
    progress=None,
    previous: list[Artifact] | None = None,
    on_done=None,
    min_evidence: int = MIN_EVIDENCE,
    timings: list | None = None,
    warm: WarmWorkers | None = None,
    slots: PriorityPool | None = None,
    rank: int = 0,
) -> tuple[list[Artifact], list[Failure]]:
    """Build the plan's artifacts of one model into ``out``; reuse up-to-date ones from ``previous``.

    ``on_done(artifact_or_failure, ok)`` is called as each one lands (the caller may record it).
    ``min_evidence``: the reference faces behind a strong verdict, recorded in each parity result.
    ``timings``: a list that receives where each job's time went (`zoo export --profile`).
    ``warm``: warm worker processes shared with the caller's other builds (a release's models: each
    target's imports then happen once per release); default: this build's own.
    ``slots``: the job slots shared with the caller's other builds running at the same time (a
    release's models), this build's jobs queued with priority ``rank`` (lower first); default: this
    build's own ``jobs`` slots.
    """
    clock = time.time()
    options = options or {}
    model_id = resolved.spec.id
    meta0 = resolved.meta()
    say = progress or (lambda msg: None)
    artifacts: list[Artifact] = []
    failed: list[Failure] = []
    done = on_done or (lambda item, ok: None)
    for f in plan.unavailable_failures(model_id):
        failed.append(f)
        done(f, False)
    prev = {a.key: a for a in (previous or [])}
    todo: list[Job] = []
    hashes: dict[tuple, str] = {}
    for j in plan.jobs:
        if j.intermediate:
            continue
        h = hashes[j.key] = inputs_sha256(resolved, j, images, calib, options)
        old = prev.get(j.artifact_key(model_id))
        if old and old.inputs_sha256 == h and artifact_verifies(out, old):
            say(f"{model_id}: {j.label()} is up to date")
            old = replace(old, parity=grade(old.parity, min_evidence))  # its evidence, against this run's --min-evidence
            artifacts.append(old)
            done(old, True)
            continue
        todo.append(j)
    if not todo:
        return artifacts, failed
    need_heads = {get_target(j.target).source_head(j.head) for j in todo if get_target(j.target).source == "onnx"}
    work = Path(tempfile.mkdtemp(prefix=".zoo-work-", dir=out))
    try:
        def job_dict(j: Job, onnx_path: str | None) -> dict:
            t = get_target(j.target)
            meta = meta0.with_(target=j.target, precision=j.precision, head=j.head, layout=t.layout,
                               dynamic=dynamic_info() if j.dynamic else {})
            return {
                "kind": "export", "target": j.target, "meta": meta.to_dict(),
                "checkpoint": str(resolved.checkpoint_path.resolve()), "checkpoint_sha256": resolved.checkpoint_sha256,
                "out_dir": str(work / "out" / j.label().replace("/", "-")),
                "stem": j.stem(model_id),
                "onnx_path": onnx_path, "calib": calib, "images": [] if j.intermediate else images,
                "options": {**options, "min_runtime": j.min_runtime} if j.min_runtime else options,
                "threads": threads, "min_evidence": min_evidence,
                "sensitivity": sensitivity if base_precision(j.precision) == "int8" else {},
                "reference": references, "weights": weights if weights and Path(weights).is_file() else None,
            }

        def record(what: str, submitted: float, started: float, res: dict) -> None:
            if timings is not None:
                timings.append(job_timing(model_id, what, submitted, started, time.time(), res))

        def execute(j: Job, onnx_path: str | None, submitted: float | None = None) -> tuple[Job, dict, dict]:
            started = time.time()
            jd = job_dict(j, onnx_path)
            say(f"{model_id}: {'building intermediate ' if j.intermediate else 'exporting '}{j.label()} ...")
            res = run_worker(jd, work / "logs", timeout or get_target(j.target).timeout, j.label().replace("/", "-"),
                             warm=warm)
            record(("onnx intermediate " + j.head) if j.intermediate else j.label(), submitted or started, started, res)
            return j, jd, res

        def land(j: Job, jd: dict, res: dict, onnx_by_head: dict) -> None:
            if pool.cancelled:  # the run was interrupted (in a release: on another thread); a job it
                raise CancelledError(f"{model_id}: interrupted")  # killed is no failure to record
            key = j.artifact_key(model_id)
            if not res.get("ok"):
                failed.append(Failure(key.model, key.target, key.precision, key.head, res.get("error", "unknown error"),
                                      key.dynamic, key.min_runtime))
                say(f"  FAILED {model_id} {j.label()}: {res.get('error')}")
                done(failed[-1], False)
                return
            src = Path(jd["out_dir"])
            rels = []
            for f in res["files"]:
                dest = out / j.target / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(src / f, FILE_MODE)  # converters may create 0600 temporaries
                os.replace(src / f, dest)  # same file system: atomic
                rels.append(str(Path(j.target) / f))
                if onnx_by_head.get(j.head) == str(src / f):  # the input of the targets converting from it
                    onnx_by_head[j.head] = str(dest)
            t = get_target(j.target)
            lineage = {"checkpoint_sha256": resolved.checkpoint_sha256}
            if t.source == "onnx":
                lineage["onnx_sha256"] = sha256_file(Path(onnx_by_head[t.source_head(j.head)]))
            art = Artifact(key.model, key.target, key.precision, key.head, layout=t.layout, dynamic=key.dynamic,
                           min_runtime=key.min_runtime, primary=str(Path(j.target) / res["primary"]),
                           files=file_entries(out, rels), tools=res["tools"], parity=res["parity"], meta=res["meta"],
                           lineage=lineage, inputs_sha256=hashes[j.key])
            artifacts.append(art)
            ok = art.parity is None or art.passed  # no parity images: nothing failed
            say(f"  {'ok' if ok else 'PARITY FAILED'} {model_id} {j.label()} -> {art.primary}")
            done(art, ok)

        sensitivity: dict = {}  # set before any int8 job is submitted (job_dict reads it when the job starts)
        sensitivity_error = None
        need_sensitivity = (options.get("keep_float", "auto") == "auto"
                            and any(base_precision(j.precision) == "int8" for j in todo))

        def run_sensitivity(submitted: float) -> tuple[dict, str | None]:
            # one model-level analysis, shared by every int8 target (the same layers stay float everywhere)
            started = time.time()
            took: dict = {}
            analysis, error = analyse_sensitivity(
                {"kind": "sensitivity", "meta": meta0.to_dict(), "calib": calib, "threads": threads,
                 "checkpoint": str(resolved.checkpoint_path.resolve()), "checkpoint_sha256": resolved.checkpoint_sha256},
                work / "logs", lambda msg: say(f"{model_id}: {msg}"), took, warm)
            record("int8 sensitivity analysis", submitted, started, {"ok": error is None, "timings": took})
            return analysis or {}, error
        # the PyTorch reference outputs on the parity images, once for every job (cached across runs),
        # and the weights as NumPy for targets that build their own network: one torch process
        references: dict = {}
        weights: str | None = None
        ref_job = None
        if images:
            if any(get_target(j.target).numpy_weights for j in todo):
                weights = str(work / "weights.npz")
            heads = ["decoded" if j.head == "nms" else j.head for j in todo]
            heads += [shift_head(j.head) for j in todo if shift_applies(j.precision, j.head)]  # the shift gate's mosaics
            references, ref_job = reference_job(
                str(resolved.checkpoint_path.resolve()), resolved.checkpoint_sha256, meta0.to_dict(),
                heads, images, threads, weights)
            if ref_job is not None and not weights and all(get_target(j.target).source == "torch" for j in todo):
                # every job loads torch anyway (ONNX from PyTorch): each computes the reference itself and
                # stores it for the next run, rather than waiting for a worker of its own
                ref_job = None
        onnx_by_head: dict[str, str] = {}
        intermediate_errors: dict[str, str] = {}
        keys = {j.key for j in todo}
        # a run is all fixed-size or all dynamic (make_plan): the ONNX the others read is of the same kind
        dyn = any(j.dynamic for j in todo)
        first = [j for j in todo if j.target == "onnx" and j.precision == "fp32" and j.head in need_heads]
        first += [Job("onnx", "fp32", h, intermediate=True, dynamic=dyn) for h in sorted(need_heads)
                  if ("onnx", "fp32", h, dyn, "") not in keys]
        rest = [j for j in todo if j not in first]
        def run_reference(submitted: float) -> dict:
            started = time.time()
            res = run_worker(ref_job, work / "logs", REFERENCE_TIMEOUT, "reference", warm=warm)
            record("pytorch reference", submitted, started, res)
            if not res.get("ok"):  # every worker then computes its own reference: slower, still right
                say(f"{model_id}: the shared PyTorch reference failed ({res.get('error')}); each job computes its own")
            return res

        futs = []
        ref_future, first_futs, sens_future = None, [], None
        # the order of work: the PyTorch reference and the ONNX the converters read first, side by side;
        # the jobs that do not read that ONNX (TFLite, SavedModel: from the weights) as soon as the
        # reference is there; the others once their ONNX is. Targets with slow imports (`prestart`) have
        # their warm process importing from the start. Every job lands in the plan's order.
        with (nullcontext(slots) if slots is not None else PriorityPool(jobs)) as pool, (
                nullcontext(warm) if warm is not None else warm_workers()) as warm:
            try:
                for name in sorted({j.target for j in rest if get_target(j.target).warm and get_target(j.target).prestart}):
                    prestart_export_worker(warm, name, work / "logs")  # none when one is warm already
                ref_future = pool.submit(rank, run_reference, time.time()) if ref_job is not None else None
                first_futs = [pool.submit(rank, execute, j, None, time.time()) for j in first]
                # the int8 analysis beside the float work; only the int8 jobs wait for it
                sens_future = pool.submit(rank, run_sensitivity, time.time()) if need_sensitivity else None

                def submit(j: Job) -> None:
                    t = get_target(j.target)
                    sh = t.source_head(j.head)
                    if sensitivity_error and base_precision(j.precision) == "int8":
                        futs.append((j, None, {"ok": False, "error": sensitivity_error}))
                    elif t.source == "onnx" and sh not in onnx_by_head:
                        why = intermediate_errors.get(sh) or "see the onnx artifact's error"
                        futs.append((j, None, {"ok": False, "error": f"our {sh} ONNX (its input) failed to build: {why}"}))
                    else:
                        futs.append((j, pool.submit(rank, execute, j, onnx_by_head.get(sh) if t.source == "onnx" else None,
                                                    time.time()), None))

                int8 = [j for j in rest if base_precision(j.precision) == "int8"]
                early = [j for j in rest if get_target(j.target).source != "onnx" and j not in int8]
                if ref_future is not None:
                    ref_future.result()
                for j in early:
                    submit(j)
                for f in first_futs:
                    j, jd, res = f.result()
                    if res.get("ok"):
                        onnx_by_head[j.head] = str(Path(jd["out_dir"]) / res["primary"])
                    if j.intermediate:
                        if not res.get("ok"):
                            say(f"  FAILED intermediate onnx/{j.head}: {res.get('error')}")
                            onnx_by_head.pop(j.head, None)
                            intermediate_errors[j.head] = res.get("error")
                        continue
                    land(j, jd, res, onnx_by_head)
                for j in rest:
                    if j not in early and j not in int8:
                        submit(j)
                if sens_future is not None:
                    sensitivity, sensitivity_error = sens_future.result()
                for j in int8:
                    submit(j)
                for j, f, failure in futs:
                    if failure is not None:
                        land(j, {}, failure, onnx_by_head)
                    else:
                        land(*f.result(), onnx_by_head)
                for w in warm.take_warmups() if timings is not None else []:
                    timings.append(job_timing(model_id, f"{w['family'].split(':', 1)[-1]} warm-up (imports)",
                                              w["started"], w["started"], w["done"], w["result"]))
            except BaseException:  # nothing queued starts; what runs is stopped
                for f in [ref_future, sens_future, *first_futs, *(f for _, f, _ in futs)]:
                    if f is not None:
                        f.cancel()
                kill_active_workers()
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if timings is not None:
        timings.append({"model": model_id, "what": "all", "wall": round(time.time() - clock, 3)})
    return artifacts, failed


def job_timing(model_id: str, what: str, submitted: float, started: float, done: float, res: dict) -> dict:
    """Where one worker's time went, in seconds: waiting for a free worker slot, interpreter start-up
    and our modules, the runtime/converter imports, conversion, quantization, the PyTorch reference
    and the runtime's inference for parity."""
    t = res.get("timings") or {}
    row = {"model": model_id, "what": what, "ok": bool(res.get("ok")), "total": round(done - submitted, 3),
           "waiting": round(started - submitted, 3)}
    if "t0" in t:
        export = t.get("export", 0.0)
        quant = t.get("quantization", 0.0)
        row.update({
            "startup": round(max(0.0, t.get("t1", t["t0"]) - started), 3),
            "imports": round(t.get("imports", 0.0), 3),
            "conversion": round(max(0.0, export - quant), 3),
            "quantization": round(quant, 3),
            "reference": round(t.get("reference", 0.0), 3),
            "inference": round(t.get("inference", 0.0), 3),
        })
        row["torch"] = bool(t.get("torch"))  # whether the worker loaded torch
        if "cpu" in t:  # CPU seconds the job used, its quantizer subprocesses included (wall x cores when busy)
            row["cpu"] = t["cpu"]
        row["other"] = round(max(0.0, row["total"] - row["waiting"] - sum(
            row[k] for k in ("startup", "imports", "conversion", "quantization", "reference", "inference"))), 3)
    return row


def export_model(
    resolved: ResolvedModel,
    targets: list[str],
    precisions: list[str],
    out: Path,
    head: str | None = None,
    images: list[Path] | None = None,
    calib: list[Path] | None = None,
    options: dict | None = None,
    threads: int = 1,
    jobs: int = 1,
    timeout: float | None = None,
    progress=None,
    nms: bool = False,
    min_evidence: int = MIN_EVIDENCE,
    timings: list | None = None,
    dynamic: bool = False,
    min_runtime: str | None = None,
) -> Manifest:
    """Build every requested artifact of one model into ``out`` and write ``out/manifest.json``
    (parity on ``images``, default: the pinned photos of zoo.core.parity_set); ``min_runtime``
    (``NAME==VERSION[,...]``): the targets running on NAME convert for that older release."""
    plan = make_plan(targets, precisions, head, nms, dynamic, min_runtime)
    out = ensure_writable_dir(Path(out))
    old = existing_manifest(out)  # refused now, before any work, if it is not ours
    images_s = [str(p) for p in (images or default_images())]
    calib_s = [str(p) for p in (calib or default_calibration())]
    artifacts, failed = build_artifacts(resolved, plan, out, images_s, calib_s, options, threads, jobs, timeout, progress,
                                        min_evidence=min_evidence, timings=timings)
    return write_export_manifest(out, resolved.describe(), artifacts, failed, plan.skipped, old)


def write_export_manifest(out: Path, model: dict, artifacts: list[Artifact], failed: list[Failure], skipped: list[dict],
                          old: Manifest | None) -> Manifest:
    """Merge with the folder's previous manifest of the same model (other artifacts stay listed), then write atomically."""
    keep: list[Artifact] = []
    if old is not None and old.model == model:
        new_keys: set[ArtifactKey] = {x.key for x in [*artifacts, *failed]}
        keep = [a for a in old.artifacts if a.key not in new_keys and all((out / f.path).is_file() for f in a.files)]
    manifest = Manifest(artifacts=keep + artifacts, failed=list(failed), model=model, skipped=skipped)
    manifest.sorted(target_names())
    write_manifest(out, manifest)
    return manifest
