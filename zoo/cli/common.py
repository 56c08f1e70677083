"""Options shared by several commands, exit codes, and small printing helpers."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.checkpoints.resolve import ResolvedModel, resolve_model
from zoo.exporters import check_runtime_name
from zoo.validation.parity import MIN_EVIDENCE, SIZE_BUCKETS, shift_min_evidence, weak_evidence
from zoo.core.errors import ZooError
from zoo.core.images import collect_readable
from zoo.core.model.specs import parse_input_size, parse_labels
from zoo.core.parity_set import ENV_IMAGES, default_images
from zoo.pipeline.profile import render, write_timings

#: exit codes (documented in README.md and docs/commands.md)
EXIT_OK, EXIT_USER, EXIT_FAILED = 0, 1, 2

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry id (see `zoo list`).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", help="A checkpoint of the family (state dict).")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="slim|rfb, with --checkpoint.")]
LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="Comma-separated labels, background first.")]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="Network input WxH, e.g. 640x480.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Runtime threads.")]
ImagesOpt = Annotated[Optional[Path], typer.Option(
    "--images", help="Parity images (default: the 16 pinned photos, from ZOO_IMAGES_DIR or the cache; built-in photos offline).")]
MinEvidenceOpt = Annotated[int, typer.Option(
    "--min-evidence", min=1, help="Reference faces an fp16/int8 verdict needs to be strong evidence.")]
AllowWeakOpt = Annotated[bool, typer.Option(
    "--allow-weak-evidence", help="Do not fail (exit 2) when an fp16/int8 verdict rests on fewer than --min-evidence faces.")]
JunitOpt = Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here (for CI).")]
RuntimeOpt = Annotated[Optional[str], typer.Option(
    "--runtime", help="Run artifacts in this runtime (see `zoo list`; e.g. opencv for ONNX); default: each target's own.")]
RuntimesOpt = Annotated[Optional[str], typer.Option(
    "--runtime", help="Run artifacts in these runtimes, comma-separated (see `zoo list`; e.g. onnxruntime,opencv): "
                      "each artifact once per named runtime it offers; default: each target's own.")]


def resolve_from_options(model, checkpoint, arch, labels, input_size) -> ResolvedModel:
    size = parse_input_size(input_size) if input_size is not None else None
    labs = parse_labels(labels) if labels is not None else None
    rm = resolve_model(model, checkpoint, arch, labs, size)
    if checkpoint is not None:  # a user file: strict key/shape check now, with a clear message (a registry
        rm.build("raw")         # file is the one its sha256 names, checked against its network by the tests)
    return rm


def runtimes_option(runtime: str | None) -> list[str]:
    """A validated --runtime list (check, verify, bench): [] when not given; an unknown name is an error
    suggesting the nearest one; a name given twice counts once."""
    if runtime is None:
        return []
    return [check_runtime_name(r) for r in dict.fromkeys(split_list(runtime, "--runtime"))]


def split_list(text: str | None, what: str) -> list[str]:
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not items:
        raise ZooError(f"{what} is empty")
    return items


def parity_images(images: Path | None) -> list[Path]:
    """--images, else the default parity set (the pinned photos; a warning and the built-in photos offline)."""
    return collect_readable(images, "--images") if images is not None else default_images(stderr)


def detection_text(parity: dict | None) -> str:
    """A verdict's detection counts for its PASS/FAIL line: ``det 290/291 extra 0 strict 287/0`` (kept /
    reference faces and extra detections under the tier's score margin, then kept / extra with no margin),
    and for an artifact proven on the shift gate the same pooled over its mosaics:
    ``shift 2x2+3x3 235/235 extra 0 strict 228/1``."""
    p = parity or {}
    d = p.get("detections") or {}
    st = d.get("strict") or {}
    text = f"det {d.get('matched', 0)}/{d.get('reference', 0)} extra {d.get('extra', 0)}"
    if st:
        text += f" strict {st.get('matched', 0)}/{st.get('extra', 0)}"
    sh = p.get("shift")
    if isinstance(sh, dict) and sh.get("pooled"):
        c = sh["pooled"]
        text += (f"  shift {'+'.join(sh.get('layouts', []))} {c.get('matched', 0)}/{c.get('reference', 0)} "
                 f"extra {c.get('extra', 0)} strict {(c.get('strict') or {}).get('matched', 0)}/"
                 f"{(c.get('strict') or {}).get('extra', 0)}")
    return text


def dynamic_text(parity: dict | None) -> str:
    """A dynamic artifact's sizes and batch, for its PASS/FAIL line ("" for a fixed-size one)."""
    dyn = (parity or {}).get("dynamic")
    if not dyn:
        return ""
    sizes = ", ".join(f"{k} {v['matched']}/{v['reference']}+{v['extra']}" for k, v in dyn.get("sizes", {}).items())
    b = dyn.get("batch") or {}
    return f"\n      dynamic: {sizes}; batch {b.get('n', '-')} {'= batch-1' if b.get('passed') else 'DIFFERS'}"


def evidence_text(parity: dict | None, min_evidence: int = MIN_EVIDENCE, judge: bool = True) -> str:
    """What a verdict rests on, for its PASS/FAIL line: ``evidence 16 img 285 faces (<16px 31, ...)``, then
    ``weak evidence (...)`` for an fp16/int8 verdict on fewer than ``min_evidence`` faces (with ``judge``)
    and the overlap of calibration and gate when there is one."""
    ev = (parity or {}).get("evidence")
    if not ev:
        return "evidence not recorded"
    by = ev.get("by_size") or {}
    sizes = ", ".join(f"{b}px {by.get(b, 0)}" for b in SIZE_BUCKETS)
    text = f"evidence {ev.get('images', 0)} img {ev.get('faces', 0)} faces ({sizes})"
    sh = (parity or {}).get("shift")
    if isinstance(sh, dict) and sh.get("evidence"):
        text += f"; shift {sh['evidence'].get('images', 0)} mosaics {sh['evidence'].get('faces', 0)} faces"
    if judge and weak_evidence(parity, min_evidence):
        if ev.get("faces", 0) < min_evidence:
            text += f"  weak evidence ({ev.get('faces', 0)} faces < {min_evidence})"
        else:
            text += (f"  weak evidence (shift: {sh['evidence'].get('faces', 0)} faces < "
                     f"{shift_min_evidence(min_evidence)}, half of {min_evidence})")
    n = len(ev.get("overlap") or [])
    if n:
        text += f"  calibration overlaps the gate: {n} image{'s' if n != 1 else ''}"
    return text


def exit_on_weak_evidence(parities: list[dict | None], min_evidence: int, allow: bool) -> None:
    """Exit 2 with one line when an fp16/int8 verdict rests on fewer than ``min_evidence`` reference faces,
    unless ``allow`` (--allow-weak-evidence). fp32 verdicts are gated on every output tensor: never weak."""
    weak = [p for p in parities if weak_evidence(p, min_evidence)]
    if not weak or allow:
        return
    faces = sorted({(p.get("evidence") or {}).get("faces", 0) for p in weak})
    on = f"{faces[0]}" if len(faces) == 1 else f"{faces[0]} to {faces[-1]}"
    stderr(f"error: weak evidence: {len(weak)} fp16/int8 artifact(s) proven on only {on} reference faces "
           f"(fewer than --min-evidence {min_evidence}, or than {shift_min_evidence(min_evidence)} on the shift gate's "
           f"mosaics); give --images with more faces, set {ENV_IMAGES} to a copy "
           "of the pinned photos (or let them be fetched into the cache), or pass --allow-weak-evidence")
    raise typer.Exit(EXIT_FAILED)


def diff_hint(primary: str | Path, runtime: str | None = None) -> str:
    """The line a failing artifact's FAIL line ends with: the `zoo diff` command that shows which of its
    layers departs from PyTorch (empty when the file is not there to compare)."""
    if not Path(primary).is_file():
        return ""
    return f"      layer by layer: zoo diff {primary}" + (f" --runtime {runtime}" if runtime else "")


def print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2))


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class StderrWarnings(list):
    """A ``warnings`` list for the API that prints each warning on stderr as it comes (the CLI's behaviour)."""

    def append(self, msg: str) -> None:
        stderr(msg)


def default_jobs() -> int:
    """--jobs when not given: one worker process per core."""
    return max(1, os.cpu_count() or 1)


JobsOpt = Annotated[Optional[int], typer.Option("--jobs", min=1, help="Parallel worker processes (default: the number of cores).")]
ProfileOpt = Annotated[bool, typer.Option("--profile", help="Print where the time went and write DIR/timings.json.")]


def profile_run(out: Path, jobs: int, started: float, rows: list) -> None:
    """After an export or a release with --profile: the table on stderr, DIR/timings.json written."""
    wall = time.time() - started
    path = write_timings(out, sys.argv[1:], jobs, wall, rows)
    stderr(render(rows, wall))
    stderr(f"timings: {path}")

