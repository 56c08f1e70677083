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
from zoo.core.manifest import read_manifest

FORMATS = ("md", "json", "csv", "png", "html")
#: files beside a manifest that are its own records: never a report's --out
RECORDS = ("manifest.json", "bench.json", "compat.json", "timings.json", "pull.json")
#: folders of a release a report is never written into (besides each artifact's own folder)
PROTECTED = ("golden", "cards")


def check_out(folders: list[Path], out: Path) -> None:
    """Refuse an ``--out`` that would overwrite a file a manifest lists (or the folder's own records), or that
    lies inside an artifact's folder, the golden kit or the model cards: one ZooError naming it."""
    target = Path(out).expanduser().resolve()
    if target.is_dir():
        raise ZooError(f"--out {out} is a folder; give a file name")
    for folder in folders:
        folder = Path(folder)
        root = (folder if folder.is_dir() else folder.parent).resolve()
        try:
            m = read_manifest(folder)
        except ZooError:
            continue  # build_report says what is wrong with it
        listed = {(root / f.path).resolve() for f in m.all_files()} | {root / r for r in RECORDS}
        if target in listed:
            raise ZooError(f"--out {out} would overwrite {target.relative_to(root)}, a file of the release "
                           f"{folder}; write the report elsewhere (e.g. {root / 'REPORT.html'})")
        inside = {(root / f.path).resolve().parent for a in m.artifacts for f in a.files} - {root}
        inside |= {root / d for d in PROTECTED}
        for d in sorted(inside):
            if target.is_relative_to(d):
                raise ZooError(f"--out {out} lies inside {d.relative_to(root) if d.is_relative_to(root) else d}/ of "
                               f"the release {folder} (artifacts, golden kit and cards are the release's own); "
                               "write the report beside the manifest or elsewhere")


def render_json(rep: dict) -> str:
    return json.dumps(rep, indent=2) + "\n"


_TEXT = {"md": render_markdown, "json": render_json, "csv": render_csv}


def write_report(folders: list[Path], fmt: str = "md", out: Path | None = None,
                 bench_path: Path | None = None) -> tuple[dict, str | None, Path | None]:
    """Build and render. Returns (report data, text or None for png, the file written or None)."""
    if fmt not in FORMATS:
        raise ZooError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "html":  # computed at report time through the runtimes: zoo.pipeline.report_page
        raise ZooError("--format html is written by zoo.pipeline.report_page.html_report")
    if fmt == "png" and out is None:
        first = Path(folders[0])
        out = (first if first.is_dir() else first.parent) / "report.png"
    if out is not None:
        check_out(folders, out)
    rep = build_report(folders, bench_path)
    if fmt == "png":
        return rep, None, render_png(rep, out)
    text = _TEXT[fmt](rep)
    if out is not None:
        atomic_write_text(Path(out), text)
        return rep, text, Path(out)
    return rep, text, None
