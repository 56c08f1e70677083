"""Options shared by several commands, exit codes, and small printing helpers."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from checkpoints.resolve import ResolvedModel, resolve_model
from exporters import check_runtime_name
from zoo.core.errors import ZooError
from zoo.core.model.specs import parse_input_size, parse_labels

#: exit codes (documented in README.md)
EXIT_OK, EXIT_USER, EXIT_FAILED = 0, 1, 2

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry id (see `zoo list`).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", help="A checkpoint of the family (state dict).")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="slim|rfb, with --checkpoint.")]
LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="Comma-separated labels, background first.")]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="Network input WxH, e.g. 640x480.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Runtime threads.")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="Parity images (default: the built-in set).")]
JunitOpt = Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here (for CI).")]
RuntimeOpt = Annotated[Optional[str], typer.Option(
    "--runtime", help="Run artifacts in this runtime (see `zoo list`; e.g. opencv for ONNX); default: each target's own.")]


def resolve_from_options(model, checkpoint, arch, labels, input_size) -> ResolvedModel:
    size = parse_input_size(input_size) if input_size is not None else None
    labs = parse_labels(labels) if labels is not None else None
    rm = resolve_model(model, checkpoint, arch, labs, size)
    rm.build("raw")  # strict key/shape check now, with a clear message
    return rm


def runtime_option(runtime: str | None) -> str | None:
    """A validated --runtime (unknown: an error naming the available ones)."""
    return None if runtime is None else check_runtime_name(runtime)


def split_list(text: str | None, what: str) -> list[str]:
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not items:
        raise ZooError(f"{what} is empty")
    return items


def print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2))


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
