"""Plans and runs exports: ordering, isolation (worker process + timeout), atomic placement, manifest."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from exporters import get_target
from exporters.base import PRECISIONS
from zoo.errors import ZooError
from zoo.isolation import kill_active_workers, run_isolated
from zoo.fsutil import atomic_write_text, ensure_writable_dir, sha256_file
from zoo.meta import ArtifactMeta

MANIFEST = "manifest.json"
FILE_MODE = 0o644
SCHEMA_VERSION = 1


@dataclass
class Job:
    target: str
    precision: str
    head: str
    intermediate: bool = False  # an ONNX file other targets read, not an artifact

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target, self.precision, self.head)

    def label(self) -> str:
        return f"{self.target}/{self.precision}/{self.head}"


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[dict] = field(default_factory=list)  # combinations a target does not offer
    unavailable: list[dict] = field(default_factory=list)  # targets whose runtime is missing


def make_plan(targets: list[str], precisions: list[str], head: str | None, nms: bool = False) -> Plan:
    """Validate names, expand target x precision, put the ONNX that others read first."""
    for p in precisions:
        if p not in PRECISIONS:
            from zoo.registry import nearest

            raise ZooError(f"unknown precision {p!r}{nearest(p, PRECISIONS)}; valid: {', '.join(PRECISIONS)}")
    if head is not None and head not in ("decoded", "raw"):
        raise ZooError(f"unknown head {head!r}; valid: decoded, raw")
    objs = [get_target(t) for t in dict.fromkeys(targets)]  # raises on unknown names
    plan = Plan(jobs=[])
    for t in objs:
        if not t.available():
            for p in precisions:
                if p in t.precisions:
                    plan.unavailable.append(
                        {"target": t.name, "precision": p, "head": head or t.default_head(p),
                         "error": f"missing {', '.join(t.missing())}: pip install 'ultraface-zoo[{t.extra}]'"}
                    )
            continue
        offered = [p for p in precisions if p in t.precisions]
        for p in precisions:
            if p not in t.precisions:
                plan.skipped.append({"target": t.name, "precision": p, "reason": f"{t.name} offers {', '.join(t.precisions)}"})
        if not offered:
            raise ZooError(f"target {t.name!r} has none of the precisions {', '.join(precisions)}; it has {', '.join(t.precisions)}")
        for p in offered:
            h = head or t.default_head(p)
            if h not in t.heads:
                raise ZooError(f"target {t.name!r} has no {h!r} head; it has: {', '.join(t.heads)}")
            for v in t.expand(p):
                plan.jobs.append(Job(t.name, v, h))
    if nms:
        if "onnx" not in [t.name for t in objs]:
            raise ZooError("--nms makes an end-to-end ONNX graph: add onnx to --to")
        plan.jobs.append(Job("onnx", "fp32", "nms"))
    plan.jobs.sort(key=lambda j: j.target != "onnx")  # stable: ONNX (which others read) first
    return plan


# --------------------------------------------------------------------------- isolation

def run_worker(job: dict, work: Path, timeout: float, name: str) -> dict:
    """One export/check job in its own interpreter (exporters.worker); a crash or hang becomes an error result."""
    return run_isolated("exporters.worker", [], job, work, timeout, name)


# --------------------------------------------------------------------------- export

def base_meta(resolved) -> ArtifactMeta:
    s = resolved.spec
    return ArtifactMeta(model_id=s.id, arch=s.arch, input_size=s.input_size, labels=s.labels, head="decoded",
                        checkpoint_sha256=resolved.checkpoint_sha256)


def file_entries(root: Path, rels: list[str]) -> list[dict]:
    return [{"path": r, "sha256": sha256_file(root / r), "bytes": (root / r).stat().st_size} for r in sorted(set(rels))]


def _artifact_order(a: dict) -> tuple:
    from exporters import target_names

    names = target_names()
    t = names.index(a["target"]) if a["target"] in names else len(names)
    base = a["precision"].split("-")[0]
    return (a.get("model", ""), t, PRECISIONS.index(base) if base in PRECISIONS else 9, a["precision"], a["head"])


def inputs_sha256(resolved, job: Job, images: list[str], calib: list[str], options: dict) -> str:
    """What an artifact depends on: checkpoint, model facts, options, images, tool versions, our version."""
    import hashlib

    from zoo import __version__

    t = get_target(job.target)
    facts = {
        "checkpoint": resolved.checkpoint_sha256, "model": resolved.describe(), "job": [job.target, job.precision, job.head],
        "images": [sha256_file(Path(p)) for p in images],
        "calib": [sha256_file(Path(p)) for p in calib] if job.precision.startswith("int8") else [],
        "options": options, "tools": t.tool_versions(), "zoo": __version__,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def artifact_verifies(out: Path, art: dict) -> bool:
    try:
        return all((out / f["path"]).is_file() and (out / f["path"]).stat().st_size == f["bytes"]
                   and sha256_file(out / f["path"]) == f["sha256"] for f in art["files"])
    except OSError:
        return False


def build_artifacts(
    resolved,
    plan: Plan,
    out: Path,
    images: list[str],
    calib: list[str],
    options: dict | None = None,
    threads: int = 1,
    jobs: int = 1,
    timeout: float | None = None,
    progress=None,
    previous: list[dict] | None = None,
    on_done=None,
) -> tuple[list[dict], list[dict]]:
    """Build the plan's artifacts of one model into ``out``; reuse up-to-date ones from ``previous``.

    ``on_done(artifact_or_failure, ok)`` is called as each one lands (the caller may record it).
    Returns (artifacts, failed).
    """
    options = options or {}
    meta0 = base_meta(resolved)
    say = progress or (lambda msg: None)
    artifacts: list[dict] = []
    failed: list[dict] = []
    done = on_done or (lambda item, ok: None)
    for u in plan.unavailable:
        failed.append({**u, "model": resolved.spec.id})
        done(failed[-1], False)
    prev = {(a.get("model"), a["target"], a["precision"], a["head"]): a for a in (previous or [])}
    todo: list[Job] = []
    hashes: dict[tuple, str] = {}
    for j in plan.jobs:
        if j.intermediate:
            continue
        h = hashes[j.key] = inputs_sha256(resolved, j, images, calib, options)
        old = prev.get((resolved.spec.id, *j.key))
        if old and old.get("inputs_sha256") == h and artifact_verifies(out, old):
            say(f"{resolved.spec.id}: {j.label()} is up to date")
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
            meta = meta0.with_(target=j.target, precision=j.precision, head=j.head, layout=t.layout)
            return {
                "kind": "export", "target": j.target, "meta": meta.to_dict(),
                "checkpoint": str(resolved.checkpoint_path.resolve()), "checkpoint_sha256": resolved.checkpoint_sha256,
                "out_dir": str(work / "out" / j.label().replace("/", "-")),
                "stem": f"{resolved.spec.id}-{j.head}-{j.precision}",
                "onnx_path": onnx_path, "calib": calib, "images": [] if j.intermediate else images,
                "options": options, "threads": threads,
            }

        def execute(j: Job, onnx_path: str | None) -> tuple[Job, dict, dict]:
            jd = job_dict(j, onnx_path)
            say(f"{resolved.spec.id}: {'building intermediate ' if j.intermediate else 'exporting '}{j.label()} ...")
            res = run_worker(jd, work / "logs", timeout or get_target(j.target).timeout, j.label().replace("/", "-"))
            return j, jd, res

        def land(j: Job, jd: dict, res: dict, onnx_by_head: dict) -> None:
            entry = {"model": resolved.spec.id, "target": j.target, "precision": j.precision, "head": j.head}
            if not res.get("ok"):
                failed.append({**entry, "error": res.get("error", "unknown error")})
                say(f"  FAILED {resolved.spec.id} {j.label()}: {res.get('error')}")
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
            t = get_target(j.target)
            art = {
                **entry,
                "layout": t.layout,
                "primary": str(Path(j.target) / res["primary"]),
                "files": file_entries(out, rels),
                "tools": res["tools"],
                "parity": res["parity"],
                "meta": res["meta"],
                "lineage": {"checkpoint_sha256": resolved.checkpoint_sha256},
                "inputs_sha256": hashes[j.key],
            }
            if t.source == "onnx":
                art["lineage"]["onnx_sha256"] = sha256_file(Path(onnx_by_head[t.source_head(j.head)]))
            artifacts.append(art)
            ok = res["parity"]["passed"] if res["parity"] else True
            say(f"  {'ok' if ok else 'PARITY FAILED'} {resolved.spec.id} {j.label()} -> {art['primary']}")
            done(art, ok)

        onnx_by_head: dict[str, str] = {}
        intermediate_errors: dict[str, str] = {}
        keys = {j.key for j in todo}
        first = [j for j in todo if j.target == "onnx" and j.precision == "fp32" and j.head in need_heads]
        first += [Job("onnx", "fp32", h, intermediate=True) for h in sorted(need_heads) if ("onnx", "fp32", h) not in keys]
        rest = [j for j in todo if j not in first]
        for j in first:
            j, jd, res = execute(j, None)
            if res.get("ok"):
                onnx_by_head[j.head] = str(Path(jd["out_dir"]) / res["primary"])
            if j.intermediate:
                if not res.get("ok"):
                    say(f"  FAILED intermediate onnx/{j.head}: {res.get('error')}")
                    onnx_by_head.pop(j.head, None)
                    intermediate_errors[j.head] = res.get("error")
                continue
            land(j, jd, res, onnx_by_head)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futs = []
            for j in rest:
                t = get_target(j.target)
                sh = t.source_head(j.head)
                if t.source == "onnx" and sh not in onnx_by_head:
                    why = intermediate_errors.get(sh) or "see the onnx artifact's error"
                    land(j, {}, {"ok": False, "error": f"our {sh} ONNX (its input) failed to build: {why}"}, onnx_by_head)
                    continue
                futs.append(pool.submit(execute, j, onnx_by_head.get(sh) if t.source == "onnx" else None))
            try:
                for f in futs:
                    land(*f.result(), onnx_by_head)
            except BaseException:
                for f in futs:
                    f.cancel()
                kill_active_workers()
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return artifacts, failed


def export_model(
    resolved,
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
) -> dict:
    """Build every requested artifact of one model into ``out`` and write ``out/manifest.json``."""
    from zoo.images import builtin_images, default_calibration

    plan = make_plan(targets, precisions, head, nms)
    out = ensure_writable_dir(Path(out))
    images_s = [str(p) for p in (images or builtin_images())]
    calib_s = [str(p) for p in (calib or default_calibration())]
    artifacts, failed = build_artifacts(resolved, plan, out, images_s, calib_s, options, threads, jobs, timeout, progress)
    return write_manifest(out, resolved.describe(), artifacts, failed, plan.skipped)


def write_manifest(out: Path, model: dict, artifacts: list[dict], failed: list[dict], skipped: list[dict]) -> dict:
    """Merge with an existing manifest of the same model (other artifacts stay listed), then write atomically."""
    from zoo import __version__

    path = out / MANIFEST
    keep: list[dict] = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("model") == model:
            new_keys = {(a["target"], a["precision"], a["head"]) for a in artifacts + failed}
            keep = [a for a in old.get("artifacts", []) if (a["target"], a["precision"], a["head"]) not in new_keys
                    and all((out / f["path"]).is_file() for f in a["files"])]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "zoo_version": __version__,
        "model": model,
        "artifacts": sorted(keep + artifacts, key=_artifact_order),
        "failed": sorted(failed, key=_artifact_order),
        "skipped": skipped,
    }
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST if folder.is_dir() else folder
    if not path.is_file():
        raise ZooError(f"no {MANIFEST} in {folder}: point at a folder written by `zoo export`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
