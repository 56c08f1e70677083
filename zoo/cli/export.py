"""`zoo export`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.validation.parity import MIN_EVIDENCE
from zoo.cli.common import (
    EXIT_FAILED,
    JobsOpt,
    ProfileOpt,
    default_jobs,
    profile_run,
    AllowWeakOpt,
    ArchOpt,
    CheckpointOpt,
    ImagesOpt,
    InputSizeOpt,
    JsonOpt,
    LabelsOpt,
    MinEvidenceOpt,
    ModelOpt,
    ThreadsOpt,
    detection_text,
    diff_hint,
    dynamic_text,
    evidence_text,
    exit_on_weak_evidence,
    parity_images,
    print_json,
    resolve_from_options,
    split_list,
    stderr,
)
from zoo.core.errors import ZooError
from zoo.core.images import collect_readable
from zoo.core.manifest import MANIFEST, Artifact, base_precision
from zoo.pipeline.build import KEEP_FLOAT, export_model
from zoo.pipeline.plan import make_plan, toolchain_warning


def parity_line(a: Artifact, min_evidence: int = MIN_EVIDENCE, folder: Path | None = None) -> str:
    p = a.parity or {}
    outs = ", ".join(f"{k} {v['max_abs']:.2g}" for k, v in p.get("outputs", {}).items())
    status = "PASS" if a.passed else "FAIL"
    line = (f"{status}  {a.target:<7} {a.precision:<7} {a.head:<8} {'for ' + a.min_runtime + '  ' if a.min_runtime else ''}"
            f"{detection_text(p)}  max|diff| {outs}  "
            f"{evidence_text(p, min_evidence)}")
    line += dynamic_text(p)  # a dynamic file: its sizes and batch
    if not a.passed:
        line += "\n      " + "\n      ".join(p.get("failures", []) + ([p["advice"]] if p.get("advice") else []))
        hint = diff_hint(Path(folder) / a.primary) if folder is not None else ""
        if hint:
            line += "\n" + hint
    return line


def export(
    to: Annotated[str, typer.Option("--to", help="Targets, comma-separated (see `zoo list`).")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    arch: ArchOpt = None,
    labels: LabelsOpt = None,
    input_size: InputSizeOpt = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16, int8 (comma-separated).")] = "fp32",
    head: Annotated[Optional[str], typer.Option("--head", help="decoded|raw (default: each target's own).")] = None,
    nms: Annotated[bool, typer.Option("--nms", help="Also an end-to-end ONNX graph with NonMaxSuppression (output: detections).")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Artifacts whose batch, height and width are free at run time "
                                          "(raw head; targets whose runtime cannot are skipped with the reason).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("zoo-export"),
    images: ImagesOpt = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration images for int8 (default: built-in).")] = None,
    threads: ThreadsOpt = 1,
    jobs: JobsOpt = None,
    profile: ProfileOpt = False,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds per conversion (default: per target).")] = None,
    keep_float: Annotated[str, typer.Option(
        "--keep-float", help="int8: auto (the sensitive layers the model-level analysis finds stay float) or none "
                             "(every layer int8, to measure what the float layers buy).")] = "auto",
    min_evidence: MinEvidenceOpt = MIN_EVIDENCE,
    allow_weak_evidence: AllowWeakOpt = False,
    min_runtime: Annotated[Optional[str], typer.Option(
        "--min-runtime", help="Convert for an older runtime release, NAME==VERSION[,...] (where a converter option "
                              "exists: mnn==3.0.0 -> MNN's --targetVersion 3.0); prove it with `zoo compat`.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Export artifacts, prove each against PyTorch, write DIR/manifest.json."""
    if keep_float not in KEEP_FLOAT:
        raise ZooError(f"--keep-float {keep_float!r} is not one of {', '.join(KEEP_FLOAT)}")
    targets = split_list(to, "--to")
    precisions = split_list(precision, "--precision")
    img_paths = collect_readable(images, "--images") if images is not None else None
    calib_paths = collect_readable(calib, "--calib") if calib is not None else None
    plan = make_plan(targets, precisions, head, nms, dynamic, min_runtime)  # names checked before any weights are read
    for sk in plan.skipped:
        if sk.get("dynamic") or sk.get("head"):
            stderr(f"skipped: {sk['reason']}")
    drift = toolchain_warning(targets)
    if drift:
        stderr(drift)
    started = time.time()
    jobs = jobs or default_jobs()
    rows: list = []
    rm = resolve_from_options(model, checkpoint, arch, labels, input_size)
    if img_paths is None:
        img_paths = parity_images(None)  # the pinned photos (fetched on first use)
    manifest = export_model(
        rm, targets, precisions, out, head=head, images=img_paths, calib=calib_paths,
        threads=threads, jobs=jobs, timeout=timeout, progress=None if json_ else stderr, nms=nms,
        options={"keep_float": keep_float} if keep_float != "auto" else None,
        min_evidence=min_evidence, timings=rows if profile else None, dynamic=dynamic, min_runtime=min_runtime,
    )
    if profile:
        profile_run(Path(out), jobs, started, rows)
    requested = {(t, p) for t in targets for p in precisions}
    built = {(j.target, j.min_runtime) for j in plan.jobs}  # a default build and one for an older runtime are not the same
    mine = [a for a in manifest.artifacts
            if (a.target, base_precision(a.precision)) in requested and (a.target, a.min_runtime) in built
            and a.dynamic == dynamic]
    if json_:
        print_json(manifest.to_dict())
    else:
        for a in mine:
            typer.echo(parity_line(a, min_evidence, folder=Path(out)))
        for f in manifest.failed:
            typer.echo(f"FAIL  {f.target:<7} {f.precision:<7} {f.head:<8} {'dynamic ' if f.dynamic else ''}{f.error}")
        typer.echo(f"manifest: {Path(out) / MANIFEST}")
    # every FAIL: the artifacts that could not be built and those built that failed parity (issue 39)
    bad = [*manifest.failed, *(a for a in mine if not a.passed)]
    if bad:
        names = ", ".join(f"{a.target}/{a.precision}" for a in bad)
        stderr(f"error: {len(bad)} artifact(s) failed: {names}")
        raise typer.Exit(EXIT_FAILED)
    exit_on_weak_evidence([a.parity for a in mine], min_evidence, allow_weak_evidence)
