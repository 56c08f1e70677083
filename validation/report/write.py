"""`zoo report`'s entry point: build the report, render it in a format, write it (atomically) or return it."""
from __future__ import annotations

import json
from pathlib import Path

from zoo.validation.report.collect import build_report
from zoo.validation.report.csvtext import render_csv
from zoo.validation.report.markdown import render_markdown
from zoo.validation.report.png import render_png
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text

FORMATS = ("md", "json", "csv", "png")


def render_json(rep: dict) -> str:
    return json.dumps(rep, indent=2) + "\n"


_TEXT = {"md": render_markdown, "json": render_json, "csv": render_csv}


def write_report(folders: list[Path], fmt: str = "md", out: Path | None = None,
                 bench_path: Path | None = None) -> tuple[dict, str | None, Path | None]:
    """Build and render. Returns (report data, text or None for png, the file written or None)."""
    if fmt not in FORMATS:
        raise ZooError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")
    rep = build_report(folders, bench_path)
    if fmt == "png":
        if out is None:
            first = Path(folders[0])
            out = (first if first.is_dir() else first.parent) / "report.png"
        return rep, None, render_png(rep, out)
    text = _TEXT[fmt](rep)
    if out is not None:
        atomic_write_text(Path(out), text)
        return rep, text, Path(out)
    return rep, text, None
