"""`zoo eval`: WIDER FACE val AP (Easy / Medium / Hard) by the official protocol."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.cli.common import (
    ArchOpt,
    CheckpointOpt,
    JsonOpt,
    LabelsOpt,
    ModelOpt,
    RuntimeOpt,
    ThreadsOpt,
    print_json,
)
from zoo.validation.widerface import GT_FILE, LEVELS, evaluate, load_ground_truth, predict_folder
from zoo.cli.detect import AUTO, make_runner, size_plan
from zoo.core.errors import ZooError


def _find_gt(widerface: Path, gt: Path | None) -> Path:
    if gt is not None:
        return gt
    for c in (widerface / "ground_truth", widerface / "eval_tools" / "ground_truth", widerface / "wider_face_split"):
        if (c / GT_FILE).is_file():
            return c
    raise ZooError(f"no ground truth given and none found in {widerface}/ground_truth: pass --gt, the official "
                   f"eval_tools/ground_truth folder holding {GT_FILE} and wider_{{easy,medium,hard}}_val.mat")


def eval_(
    widerface: Annotated[Path, typer.Option("--widerface", help="WIDER FACE folder holding WIDER_val/images/<event>/<name>.jpg.", show_default=False)],
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Official ground-truth folder (wider_face_val.mat, wider_{easy,medium,hard}_val.mat); default: DIR/ground_truth.")] = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    arch: ArchOpt = None,
    labels: LabelsOpt = None,
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="Network input WxH (a dynamic artifact: any allowed size), or auto.")] = None,
    artifact: Annotated[Optional[Path], typer.Option("--artifact", help="An exported artifact's primary file.")] = None,
    runtime: RuntimeOpt = None,
    score_threshold: Annotated[float, typer.Option("--score-threshold", min=0.0, max=1.0, help="Keep scores above this (the original's evaluation: 0.1).")] = 0.1,
    iou_threshold: Annotated[float, typer.Option("--iou-threshold", min=0.0, max=1.0, help="Hard-NMS IoU.")] = 0.3,
    candidate_size: Annotated[int, typer.Option("--candidate-size", min=1, help="Best boxes entering NMS.")] = 800,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep at most K detections per image (-1: all).")] = 400,
    json_: JsonOpt = False,
    threads: ThreadsOpt = 1,
) -> None:
    """Average precision on the WIDER FACE validation set (Easy, Medium, Hard), official protocol."""
    if not widerface.is_dir():
        raise ZooError(f"--widerface {widerface} is not a folder")
    truth = load_ground_truth(_find_gt(widerface, gt))
    runner = make_runner(model, checkpoint, arch, labels, None if artifact is not None else input_size, artifact,
                         threads, runtime)
    meta = runner.meta
    size = size_plan(input_size, meta) if artifact is not None or (input_size or "").strip().lower() == AUTO else None
    preds = predict_folder(
        widerface, truth, runner, input_size=size,
        score_threshold=score_threshold, iou_threshold=iou_threshold, candidate_size=candidate_size, top_k=top_k,
        progress=sys.stderr.isatty() and not json_,
    )
    aps = evaluate(preds, truth)
    w, h = size if isinstance(size, tuple) else meta.input_size
    result = {lv: (None if math.isnan(aps[lv]) else aps[lv]) for lv in LEVELS}
    result.update({
        "images": truth.num_images,
        "faces": {lv: truth.face_count(lv) for lv in LEVELS},
        "model": meta.model_id,
        "input_size": "auto" if size == AUTO else [w, h],
        "runtime": getattr(runner, "name", None),
        "artifact": str(artifact) if artifact is not None else None,
        "postprocess": {"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                        "candidate_size": candidate_size, "top_k": top_k},
    })
    if json_:
        print_json(result)
        return
    source = f"{artifact} ({result['runtime']})" if artifact is not None else meta.model_id
    typer.echo(f"WIDER FACE val AP, {truth.num_images} images, {source} at {w}x{h}:")
    for lv in LEVELS:
        ap = result[lv]
        typer.echo(f"  {lv:<7} {'n/a' if ap is None else f'{ap:.4f}'}   ({result['faces'][lv]} faces)")
