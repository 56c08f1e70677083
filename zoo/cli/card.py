"""`zoo card`: a release's model card with what `zoo compat` found appended (a view: the card in the release,
hashed and byte-reproducible, never changes with compatibility results)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.cli.common import stderr
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text
from zoo.pipeline.cards import card_view


def card(
    folder: Annotated[Path, typer.Argument(help="A release folder (written by `zoo release`).")],
    model: Annotated[str, typer.Option("--model", help="The model whose card to show, e.g. rfb-320.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the view here (outside the release) instead of printing it.")] = None,
) -> None:
    """Show a model's card with a "Runtime compatibility" section from DIR/compat.json: per artifact, the
    oldest release of each tested runtime it runs on ("runs on mnn >= 3.0.0 (tested: ...)")."""
    if not Path(folder).is_dir():
        raise ZooError(f"not a folder: {folder}")
    if out is not None:
        root = Path(folder).resolve()
        target = Path(out).resolve()
        if target == root or root in target.parents:
            raise ZooError(f"--out {out} is inside the release: the card view is written outside its hashed content")
    text = card_view(Path(folder), model)
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(Path(out), text)
        stderr(f"wrote {out}")
