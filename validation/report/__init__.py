"""`zoo report`: the original project's tables, regenerated from our measurements.

    rep = build_report([Path("release")])        # manifest.json (+ bench.json when present) of each folder
    text = render_markdown(rep)                  # or render_csv(rep); render_png(rep, path); json.dumps(rep)

Inputs per release folder: ``manifest.json`` (sizes, parity; written by
``zoo export``) and ``bench.json`` (latency, load time, memory; written by
``zoo bench``). Without bench.json the report holds sizes and parity only and
says so. The original's published figures (``[published]`` of
checkpoints/manifest.toml) appear as labelled reference rows, never mixed with ours.

collect: the report as data; markdown, csvtext, png: its renderings; write: `zoo report`.
"""
from zoo.validation.report.collect import build_report
from zoo.validation.report.csvtext import render_csv
from zoo.validation.report.markdown import render_markdown
from zoo.validation.report.png import render_png
from zoo.validation.report.write import FORMATS, write_report

__all__ = ["FORMATS", "build_report", "render_csv", "render_markdown", "render_png", "write_report"]
