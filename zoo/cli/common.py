"""Options shared by several commands, and the model they describe."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.errors import ZooError

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry id (see `zoo list`).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", help="A checkpoint of the family (state dict).")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="slim|rfb, with --checkpoint.")]
LabelsOpt = Annotated[Optional[str], typer.Option("--labels", help="Comma-separated labels, background first.")]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="Network input WxH, e.g. 640x480.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Runtime threads.")]


def resolve_from_options(model, checkpoint, arch, labels, input_size):
    from zoo.registry import parse_input_size, parse_labels, resolve_model

    size = parse_input_size(input_size) if input_size is not None else None
    labs = parse_labels(labels) if labels is not None else None
    rm = resolve_model(model, checkpoint, arch, labs, size)
    rm.build("raw")  # strict key/shape check now, with a clear message
    return rm


def split_list(text: str | None, what: str) -> list[str]:
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not items:
        raise ZooError(f"{what} is empty")
    return items


def print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2))
