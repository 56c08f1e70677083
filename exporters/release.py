"""`zoo release`: the whole matrix (models x targets x precisions), resumable, shardable, verifiable."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import threading
from pathlib import Path

from exporters import get_target, target_names
from exporters.base import PRECISIONS
from exporters.plan import (
    MANIFEST,
    Job,
    Plan,
    _artifact_order,
    artifact_verifies,
    build_artifacts,
    file_entries,
    read_manifest,
)
from zoo.errors import ZooError
from zoo.fsutil import atomic_write_bytes, atomic_write_text, ensure_writable_dir, sha256_file

LOCK_NAME = ".zoo-release.lock"
GOLDEN = "golden"
CARDS = "cards"
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- lock

@contextlib.contextmanager
def release_lock(out: Path):
    """One release per folder at a time: a second one is refused, not interleaved."""
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as e:
        raise ZooError(f"cannot create the lock file {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise ZooError(f"another `zoo release` is writing {out} (pid {holder}); wait for it to finish or use another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def clean_stale_work(out: Path) -> None:
    """Private work folders of an interrupted (even SIGKILLed) run; safe under the lock."""
    for p in out.glob(".zoo-work-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


# --------------------------------------------------------------------------- matrix

def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ZooError(f"bad --shard {text!r}: expected K/N, e.g. 1/2") from None
    if not (n >= 1 and 1 <= k <= n):
        raise ZooError(f"bad --shard {text!r}: need 1 <= K <= N")
    return k, n


def matrix(models: list[str], targets: list[str], precisions: list[str]) -> list[tuple[str, Job]]:
    """Every (model, job) of the release, in a fixed order; combinations a target lacks are left out."""
    from exporters.plan import make_plan

    out = []
    for m in models:
        plan = make_plan(targets, precisions, None)
        for j in plan.jobs:
            out.append((m, j))
        for u in plan.unavailable:
            out.append((m, Job(u["target"], u["precision"], u["head"])))
    order = {t: i for i, t in enumerate(target_names())}
    out.sort(key=lambda mj: (models.index(mj[0]), order.get(mj[1].target, 99), PRECISIONS.index(mj[1].precision.split("-")[0]),
                             mj[1].precision, mj[1].head))
    return out


def shard_of(entries: list, shard: tuple[int, int] | None) -> list:
    if not shard:
        return entries
    k, n = shard
    return [e for i, e in enumerate(entries) if i % n == k - 1]


# --------------------------------------------------------------------------- golden kit, cards

def golden_images() -> list[Path]:
    from zoo.images import builtin_images

    return builtin_images()


def write_golden(out: Path, resolved) -> list[str]:
    """Reference outputs (PyTorch) and expected detections for the golden images; returns relative paths."""
    import io

    import numpy as np

    from exporters.plan import base_meta
    from validation.runners import TorchRunner
    from zoo.images import load_batch
    from zoo.processing import postprocess

    rels = []
    imgs = golden_images()
    for p in imgs:
        rel = f"{GOLDEN}/images/{p.name}"
        if not (out / rel).is_file() or sha256_file(out / rel) != sha256_file(p):
            atomic_write_bytes(out / rel, p.read_bytes())
        rels.append(rel)
    meta = base_meta(resolved).with_(head="raw")
    x, names, sizes = load_batch(imgs, *meta.input_size)
    with TorchRunner(meta, resolved.state_dict) as r:
        ref = r.infer(x)
    mid = resolved.spec.id
    for name in ("scores", "boxes", "locations"):
        buf = io.BytesIO()
        np.save(buf, ref[name].astype(np.float32))
        rel = f"{GOLDEN}/{mid}/{name}.npy"
        atomic_write_bytes(out / rel, buf.getvalue())
        rels.append(rel)
    dets = {
        Path(n).name: [d.to_json() for d in postprocess(ref["scores"][i], ref["boxes"][i], *sizes[i], meta.labels)]
        for i, n in enumerate(names)
    }
    rel = f"{GOLDEN}/{mid}/detections.json"
    atomic_write_text(out / rel, json.dumps({"model": mid, "score_threshold": 0.7, "iou_threshold": 0.3,
                                             "candidate_size": 200, "detections": dets}, indent=2) + "\n")
    rels.append(rel)
    return rels


def write_card(out: Path, resolved, artifacts: list[dict]) -> str:
    from checkpoints.loader import manifest as ckpt_manifest
    from zoo.priors import prior_count

    s = resolved.spec
    c = ckpt_manifest().get(s.checkpoint) if s.checkpoint else None
    w, h = s.input_size
    lines = [
        f"# {s.id}: UltraFace {s.arch.upper() if s.arch == 'rfb' else s.arch} face detector, {w}x{h}",
        "",
        "Ultra-light face detector (~1 MB) of the UltraFace family, exported and proven by ultraface-zoo.",
        "",
        "## Input",
        f"- one image, resized whole to {w}x{h} (aspect ratio not kept), RGB, `(pixel - 127) / 128`",
        "- layout NCHW, except artifacts marked NHWC (TFLite), float32 unless the artifact's IO is int8",
        "",
        "## Outputs",
        f"- `scores` (1, {prior_count(w, h)}, {s.num_classes}): softmax over the labels",
        "- `boxes` (1, P, 4): `decoded` head: corners x1, y1, x2, y2 in [0, 1]; `raw` head: offsets for the host to decode",
        "  with the priors (centre variance 0.1, size variance 0.2), as the original shipped for MNN, ncnn and TFLite",
        "- post-processing: per-class score > 0.7, best 200 candidates, hard NMS at IoU 0.3, boxes scaled to the image",
        "",
        f"## Labels\n{', '.join(s.labels)}",
        "",
        "## Checkpoint",
        f"- sha256 `{resolved.checkpoint_sha256}`",
    ]
    if c:
        lines += [f"- `{c.name}`, {c.bytes} bytes, {c.params} parameters, trained at {c.train_size[0]}x{c.train_size[1]}",
                  f"- source: {c.url}", f"- licence: {c.licence}"]
        if c.widerface_ap:
            ap = c.widerface_ap
            lines += ["", "## Published accuracy (the original's README, WIDER FACE val, single scale)",
                      "", "| easy | medium | hard |", "|---|---|---|", f"| {ap['easy']} | {ap['medium']} | {ap['hard']} |"]
    lines += ["", "## Artifacts", "", "| target | precision | head | layout | file | bytes | parity |", "|---|---|---|---|---|---|---|"]
    for a in sorted(artifacts, key=_artifact_order):
        size = sum(f["bytes"] for f in a["files"])
        lines.append(f"| {a['target']} | {a['precision']} | {a['head']} | {a['layout']} | `{a['primary']}` | {size} | "
                     f"{'pass' if (a.get('parity') or {}).get('passed') else 'FAIL'} |")
    rel = f"{CARDS}/{s.id}.md"
    atomic_write_text(out / rel, "\n".join(lines) + "\n")
    return rel


# --------------------------------------------------------------------------- manifest

def release_manifest(spec: dict, models: dict, artifacts: list[dict], failed: list[dict], extra_files: list[dict]) -> dict:
    from zoo import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "zoo_version": __version__,
        "release": spec,
        "models": {k: models[k] for k in spec["models"] if k in models},
        "artifacts": sorted(artifacts, key=_artifact_order),
        "failed": sorted(failed, key=_artifact_order),
        "files": sorted(extra_files, key=lambda f: f["path"]),
    }


def write_report(out: Path, manifest: dict) -> None:
    """REPORT.md: `zoo report`'s Markdown of the release (sizes, parity; latency once `zoo bench` ran).

    A derived view, not hashed in the manifest: `zoo report DIR --out DIR/REPORT.md` after
    `zoo bench DIR` regenerates it with latencies without breaking `zoo verify`.
    """
    from validation.report import build_report, render_markdown

    atomic_write_text(out / "REPORT.md", render_markdown(build_report([out])))


def release(
    out: Path,
    models: list[str],
    targets: list[str],
    precisions: list[str],
    jobs: int = 1,
    images: list[Path] | None = None,
    calib: list[Path] | None = None,
    shard: tuple[int, int] | None = None,
    threads: int = 1,
    timeout: float | None = None,
    progress=None,
) -> dict:
    from zoo.images import builtin_images, default_calibration
    from zoo.registry import get_spec, resolve_model

    for m in models:
        get_spec(m)  # unknown ids fail before anything is written
    entries = shard_of(matrix(models, targets, precisions), shard)
    out = ensure_writable_dir(Path(out))
    images_s = [str(p) for p in (images or builtin_images())]
    calib_s = [str(p) for p in (calib or default_calibration())]
    spec = {"models": models, "targets": targets, "precisions": precisions}
    with release_lock(out):
        clean_stale_work(out)
        previous: list[dict] = []
        if (out / MANIFEST).is_file():
            try:
                old = read_manifest(out)
                if old.get("release") == spec:
                    previous = old.get("artifacts", [])
            except ZooError:
                previous = []
        artifacts: list[dict] = []
        failed: list[dict] = []
        model_info: dict = {}
        mutex = threading.Lock()

        def checkpoint_manifest():
            # after each artifact lands: a killed run resumes from here
            with mutex:
                kept = [a for a in previous if (a["model"], a["target"], a["precision"], a["head"]) not in
                        {(b["model"], b["target"], b["precision"], b["head"]) for b in artifacts + failed}
                        and artifact_verifies(out, a)]
                atomic_write_text(out / MANIFEST, json.dumps(release_manifest(spec, model_info, kept + artifacts, failed, []), indent=2) + "\n")

        def on_done(item, ok):
            with mutex:
                (artifacts if "files" in item else failed).append(item)
            checkpoint_manifest()

        extra: list[str] = []
        for m in models:
            mine = [j for mm, j in entries if mm == m]
            resolved = resolve_model(m)
            model_info[m] = resolved.describe()
            extra += write_golden(out, resolved)
            if not mine:
                continue
            plan = make_release_plan(mine)
            build_artifacts(
                resolved, plan, out, images_s, calib_s, {}, threads, jobs, timeout, progress,
                previous=[a for a in previous if a.get("model") == m], on_done=on_done,
            )
        for m in models:
            extra.append(write_card(out, resolve_model(m), [a for a in artifacts if a["model"] == m]))
        manifest = release_manifest(spec, model_info, artifacts, failed, file_entries(out, extra))
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_report(out, manifest)
    return manifest


def make_release_plan(jobs: list[Job]) -> Plan:
    plan = Plan(jobs=[])
    for j in jobs:
        t = get_target(j.target)
        if t.available():
            plan.jobs.append(j)
        else:
            plan.unavailable.append({"target": j.target, "precision": j.precision, "head": j.head,
                                     "error": f"missing {', '.join(t.missing())}: pip install 'ultraface-zoo[{t.extra}]'"})
    plan.jobs.sort(key=lambda j: j.target != "onnx")
    return plan


# --------------------------------------------------------------------------- merge

def merge(out: Path, sources: list[Path], progress=None) -> dict:
    """Join shard folders into one release whose manifest equals an unsharded run's."""
    say = progress or (lambda msg: None)
    manifests = []
    for s in sources:
        m = read_manifest(s)
        if "release" not in m:
            raise ZooError(f"{s} is not a `zoo release` folder (no release section in its manifest)")
        manifests.append((Path(s), m))
    spec = manifests[0][1]["release"]
    for s, m in manifests[1:]:
        if m["release"] != spec:
            raise ZooError(f"{s} is a shard of another release ({m['release']} != {spec})")
    out = ensure_writable_dir(Path(out))
    with release_lock(out):
        artifacts: dict[tuple, dict] = {}
        failed: dict[tuple, dict] = {}
        models: dict = {}
        extra: dict[str, dict] = {}
        for s, m in manifests:
            models.update(m.get("models", {}))
            for a in m["artifacts"]:
                key = (a["model"], a["target"], a["precision"], a["head"])
                if not artifact_verifies(s, a):
                    raise ZooError(f"{s}: files of {'/'.join(key)} do not match their sha256; rebuild that shard")
                artifacts[key] = a
                for f in a["files"]:
                    _copy(s / f["path"], out / f["path"])
            for f in m.get("failed", []):
                failed[(f["model"], f["target"], f["precision"], f["head"])] = f
            for f in m.get("files", []):
                if f["path"] == "REPORT.md" or f["path"].startswith(CARDS + "/"):
                    continue  # regenerated from the merged manifest
                if f["path"] in extra and extra[f["path"]]["sha256"] != f["sha256"]:
                    raise ZooError(f"shards disagree on {f['path']}; were they built from the same inputs?")
                extra[f["path"]] = f
                _copy(s / f["path"], out / f["path"])
        for key in list(failed):
            if key in artifacts:
                del failed[key]
        say(f"merged {len(artifacts)} artifacts from {len(manifests)} shard(s)")
        from zoo.registry import resolve_model

        arts = list(artifacts.values())
        rels = sorted(extra)
        for mid in spec["models"]:
            rels.append(write_card(out, resolve_model(mid), [a for a in arts if a["model"] == mid]))
        manifest = release_manifest(spec, models, arts, list(failed.values()), file_entries(out, rels))
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_report(out, manifest)
    return manifest


def _copy(src: Path, dest: Path) -> None:
    if dest.is_file() and sha256_file(dest) == sha256_file(src):
        return
    atomic_write_bytes(dest, src.read_bytes())


# --------------------------------------------------------------------------- verify

def verify(folder: Path, threads: int = 1, progress=None) -> dict:
    """sha256 of every file, then the golden kit through every artifact in its own runtime."""
    import tempfile

    from exporters.plan import run_worker

    say = progress or (lambda msg: None)
    folder = Path(folder)
    m = read_manifest(folder)
    if "release" not in m:
        raise ZooError(f"{folder} is not a `zoo release` folder; for `zoo export` folders use `zoo check`")
    cases: list[dict] = []
    bad_files = set()
    for f in m.get("files", []):
        ok = (folder / f["path"]).is_file() and sha256_file(folder / f["path"]) == f["sha256"]
        if not ok:
            bad_files.add(f["path"])
        cases.append({"name": f"file {f['path']}", "passed": ok, "failure": None if ok else f"{f['path']}: sha256 mismatch or missing"})
    imgs = [str(folder / f["path"]) for f in m.get("files", []) if f["path"].startswith(f"{GOLDEN}/images/")]
    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as td:
        for a in m["artifacts"]:
            name = f"{a['model']} {a['target']}/{a['precision']}/{a['head']}"
            broken = [f["path"] for f in a["files"] if not (folder / f["path"]).is_file() or sha256_file(folder / f["path"]) != f["sha256"]]
            if broken:
                cases.append({"name": name, "passed": False, "failure": f"{broken[0]}: sha256 mismatch or missing (changed since release)"})
                continue
            ref_dir = folder / GOLDEN / a["model"]
            if any(f"{GOLDEN}/{a['model']}/" in b for b in bad_files):
                cases.append({"name": name, "passed": False, "failure": f"golden kit of {a['model']} is corrupt"})
                continue
            say(f"verifying {name} ...")
            job = {"kind": "golden", "target": a["target"], "meta": a["meta"], "primary": str(folder / a["primary"]),
                   "reference_dir": str(ref_dir), "images": imgs, "threads": threads}
            res = run_worker(job, Path(td), get_target(a["target"]).timeout, name.replace(" ", "-").replace("/", "-"))
            if not res.get("ok"):
                cases.append({"name": name, "passed": False, "failure": f"{a['primary']}: {res.get('error')}"})
                continue
            p = res["parity"]
            cases.append({"name": name, "passed": p["passed"],
                          "failure": None if p["passed"] else f"{a['primary']}: {p['failures'][0]}", "parity": p})
    passed = all(c["passed"] for c in cases)
    return {"folder": str(folder), "passed": passed, "cases": cases}
