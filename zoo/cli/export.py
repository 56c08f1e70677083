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
    print_json,
    stderr,
)
from zoo.api import export_run
from zoo.core.errors import ZooError
from zoo.core.manifest import MANIFEST, Artifact
from zoo.pipeline.build import KEEP_FLOAT


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
    # a thin caller of the API (zoo.api.export_run): it prints what the API returns
    if keep_float not in KEEP_FLOAT:
        raise ZooError(f"--keep-float {keep_float!r} is not one of {', '.join(KEEP_FLOAT)}")
    started = time.time()
    jobs = jobs or default_jobs()
    rows: list = []
    _, manifest, mine = export_run(
        model, to, precision, out, checkpoint=checkpoint, arch=arch, labels=labels, input_size=input_size,
        head=head, nms=nms, dynamic=dynamic, images=images, calib=calib, threads=threads, jobs=jobs,
        timeout=timeout, keep_float=keep_float, min_evidence=min_evidence, min_runtime=min_runtime,
        say=stderr, progress=None if json_ else stderr, timings=rows if profile else None)
    if profile:
        profile_run(Path(out), jobs, started, rows)
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
