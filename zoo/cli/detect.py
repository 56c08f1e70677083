"""`zoo detect`: faces in images, through PyTorch or any exported artifact."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import cv2
import numpy as np
import typer

from zoo.checkpoints.resolve import ResolvedModel
from zoo.exporters import check_one_runtime
from zoo.api import checked_runner
from zoo.validation.parity import detections_from_rows
from zoo.cli.common import (
    ArchOpt,
    CheckpointOpt,
    JsonOpt,
    LabelsOpt,
    ModelOpt,
    RuntimeOpt,
    ThreadsOpt,
    print_json,
    resolve_from_options,
)
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes, ensure_writable_dir
from zoo.core.images import collect, read_bgr
from zoo.core.model import priors as P
from zoo.core.model.processing import postprocess, preprocess
from zoo.core.model.specs import parse_input_size
from zoo.core.runtime import Runner, TorchRunner


def make_runner(model, checkpoint, arch, labels, input_size, artifact, threads, runtime=None, verify=True) -> Runner:
    """A runner for --artifact, or the PyTorch reference for --model/--checkpoint.

    An artifact is first verified against the sha256 its folder's manifest.json or its sidecar
    records (unless ``verify`` is off: --no-verify), then opened once in an isolated worker (a
    probe), so a file that crashes or hangs its runtime, or that its metadata does not describe,
    is one clear error and not a dead `zoo`."""
    runtime = check_one_runtime(runtime)
    if artifact is not None:
        if any(v is not None for v in (model, checkpoint, arch, labels)):
            raise ZooError("--artifact carries its own model and labels: drop --model/--checkpoint/--arch/--labels")
        return checked_runner(artifact, runtime, threads, verify=verify)  # the API's check (zoo.load's)
    if runtime is not None:
        raise ZooError("--runtime chooses the runtime of an --artifact; without one, detection runs the PyTorch model")
    auto = input_size is not None and input_size.strip().lower() == AUTO
    rm: ResolvedModel = resolve_from_options(model, checkpoint, arch, labels, None if auto else input_size)
    meta = rm.meta()
    if auto:  # the PyTorch model at each photo's own size: raw head, priors of the actual size on the host
        meta = meta.with_(head="raw", dynamic=P.dynamic_info())
    return TorchRunner(meta, rm.state_dict, threads=threads)


AUTO = "auto"


def size_plan(input_size: str | None, meta) -> tuple[int, int] | str:
    """``--input-size``: the artifact's or model's own size (None), one WxH for every photo (checked against
    what the artifact allows), or "auto" (each photo's aspect ratio, long side at the trained long side)."""
    if input_size is None:
        return tuple(meta.input_size)
    if input_size.strip().lower() == AUTO:
        if not meta.is_dynamic:
            raise ZooError(f"--input-size auto needs a dynamic artifact (zoo export --dynamic); this one is fixed at "
                           f"{meta.input_size[0]}x{meta.input_size[1]}")
        return AUTO
    size = parse_input_size(input_size)
    if meta.is_dynamic or size != tuple(meta.input_size):
        meta.size_for(*size)
    return size


def network_size(plan, meta, image_w: int, image_h: int) -> tuple[int, int]:
    if plan == AUTO:
        return P.auto_size(image_w, image_h, tuple(meta.input_size))  # an artifact's size is the trained one
    return plan


@contextmanager
def _runtime_errors(runner: Runner, artifact: Path | None):
    """``with runner:``, where a runtime's own exception (not ours) on an artifact is one clear line."""
    try:
        with runner:
            yield
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - runtimes raise many types; the user gets one line naming the file
        if artifact is None:
            raise
        msg = " | ".join(l.strip() for l in str(e).splitlines() if l.strip())[:300]
        raise ZooError(f"{artifact}: {runner.name} failed: {type(e).__name__}{': ' + msg if msg else ''}") from None


def draw(image, detections, path: Path) -> None:
    img = image.copy()
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
        cv2.putText(img, f"{d.label} {d.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1)
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg", img)
    if not ok:
        raise ZooError(f"cannot encode {path}")
    atomic_write_bytes(path, buf.tobytes())


def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.", show_default=False)],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    arch: ArchOpt = None,
    labels: LabelsOpt = None,
    input_size: Annotated[Optional[str], typer.Option(
        "--input-size", help="Network input WxH (e.g. 640x480), or auto: each photo's aspect ratio, its long side "
                             "at the model's trained long side (a dynamic artifact, or --model).")] = None,
    artifact: Annotated[Optional[Path], typer.Option("--artifact", help="An exported artifact's primary file.")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Images per inference (with auto: photos of one computed size "
                                       "go together).")] = 1,
    runtime: RuntimeOpt = None,
    score_threshold: Annotated[float, typer.Option("--score-threshold", min=0.0, max=1.0)] = 0.7,
    iou_threshold: Annotated[float, typer.Option("--iou-threshold", min=0.0, max=1.0)] = 0.3,
    candidate_size: Annotated[int, typer.Option("--candidate-size", min=1)] = 200,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep at most K detections per image (-1: all).")] = -1,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write copies of the images with boxes drawn here.")] = None,
    json_: JsonOpt = False,
    threads: ThreadsOpt = 1,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip checking the --artifact's files against "
                                            "the sha256 its manifest.json or sidecar records, and its outputs against its metadata's head.")] = False,
) -> None:
    """Detect faces; print them, or JSON with --json; draw them with --out."""
    if batch < 1:
        raise ZooError(f"bad --batch {batch}: give at least 1 image per inference")
    if input_size is not None and input_size.strip().lower() != AUTO:
        parse_input_size(input_size)  # a malformed size is refused before anything loads
    paths = collect(images)
    if out is not None:
        ensure_writable_dir(out)
    runner = make_runner(model, checkpoint, arch, labels, None if artifact is not None else input_size, artifact,
                         threads, runtime, verify=not no_verify)
    meta = runner.meta
    plan = size_plan(input_size, meta)
    results: dict[int, dict] = {}
    unreadable = 0
    pending: dict[tuple[int, int], list] = {}

    def flush(size: tuple[int, int]) -> None:
        group = pending.pop(size, [])
        if not group:
            return
        x = np.concatenate([preprocess(img, *size) for _, _, img in group], axis=0)
        o = runner.infer(x)
        if not all(np.isfinite(np.asarray(v, dtype=np.float32)).all() for vs in o.values() for v in (vs if isinstance(vs, list) else [vs])):
            raise ZooError(f"{artifact or runner.name}: {runner.name} gave NaN/inf on {group[0][1]}; the file is corrupt")
        for b, (i, p, img) in enumerate(group):
            h, w = img.shape[:2]
            if "detections" in o:  # an end-to-end graph: thresholds and NMS are baked in
                dets = sorted(detections_from_rows(o["detections"][b], w, h, meta.labels), key=lambda d: -d.score)
                dets = dets[:top_k] if top_k > 0 else dets
            else:
                dets = postprocess(o["scores"][b], o["boxes"][b], w, h, meta.labels, score_threshold, iou_threshold,
                                   candidate_size, top_k)
            results[i] = {"image": str(p), "width": w, "height": h, "detections": [d.to_json() for d in dets]}
            if out is not None:
                draw(img, dets, Path(out) / p.name)

    with _runtime_errors(runner, artifact):
        for i, p in enumerate(paths):
            img = read_bgr(p)
            if img is None:
                print(f"warning: cannot read image {p}; skipped", file=sys.stderr)
                unreadable += 1
                continue
            size = network_size(plan, meta, img.shape[1], img.shape[0])
            pending.setdefault(size, []).append((i, p, img))
            if len(pending[size]) >= batch:
                flush(size)
        for size in list(pending):
            flush(size)
    ordered = [results[i] for i in sorted(results)]
    if not json_:
        for r in ordered:
            typer.echo(f"{r['image']}: {len(r['detections'])} face(s)")
            for d in r["detections"]:
                typer.echo(f"  {d['label']} {d['score']:.3f} [{', '.join(f'{v:.1f}' for v in d['box'])}]")
    results = ordered
    if json_:
        print_json({"results": results})
    if unreadable:
        print(f"error: {unreadable} of {len(paths)} image(s) could not be read", file=sys.stderr)
        raise typer.Exit(1)
