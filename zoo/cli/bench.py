"""`zoo bench` and `zoo report`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.validation.bench import BENCH_FILE, collect_items, parse_threads, save_bench
from zoo.validation.report import write_report
from zoo.validation.report.write import check_out
from zoo.api import run_bench_runtimes
from zoo.exporters import select_runtimes
from zoo.pipeline.report_page import html_report
from zoo.cli.common import EXIT_FAILED, JsonOpt, RuntimesOpt, print_json, runtimes_option, stderr
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text

class _Progress:
    """A tqdm bar on stderr when it is a terminal and output is not JSON; silent otherwise."""

    def __init__(self, enabled: bool):
        self.bar = None
        self.enabled = enabled

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm  # optional nicety: only on a terminal

            self.bar = tqdm(total=total, file=sys.stderr, unit="job", dynamic_ncols=True, leave=False)
        self.bar.n = done
        self.bar.set_description_str(label[:60])
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _line(r: dict, show_runtime: bool = False) -> str:
    name = (f"{r['model']} {r['target']}/{r['precision']}/{r['head']}" + ("/dynamic" if r.get("dynamic") else "")
            + (f" [{r.get('runtime')}]" if show_runtime else ""))
    if r.get("error"):
        return f"FAIL  {name:<32} x{r['threads']}  {r['error']}"
    spread = "—" if r.get("spread_pct") is None else f"{r['spread_pct']:.0f}%"
    roof = "—" if r.get("roofline_ratio") is None else f"{100 * r['roofline_ratio']:.0f}%"
    return (f"{name:<32} x{r['threads']}  p50 {r['p50_ms']:7.2f}  p90 {r['p90_ms']:7.2f}  p99 {r['p99_ms']:7.2f}  "
            f"min {r['min_ms']:6.2f} ms  spread {spread:>4}  init {r['init_ms']:6.1f} ms  "
            f"rss {r['peak_rss_mb']:5.0f} MiB  {r['gflops'] or 0:5.1f} GFLOP/s ({roof} of roofline)")


def bench(
    paths: Annotated[list[Path], typer.Argument(help="Release folders (manifest.json), manifest files or artifact files.")],
    threads: Annotated[str, typer.Option("--threads", help="Thread counts, comma-separated, e.g. 1,2.")] = "1",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs before timing, per process.")] = 10,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per artifact, thread count and round.")] = 50,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved rounds over all artifacts (spread shows noise).")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per worker process.")] = 300.0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the full result JSON here.")] = None,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write DIR/bench.json for each release folder.")] = True,
    runtime: RuntimesOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Latency, load time and memory of each artifact in its own runtime and process; writes DIR/bench.json."""

    thread_list = parse_threads(threads)
    if warmup < 0 or runs < 1 or rounds < 1 or timeout <= 0:
        raise ZooError("--warmup must be >= 0 and --runs, --rounds, --timeout > 0")
    runtimes = runtimes_option(runtime)
    every = collect_items(paths)
    items = select_runtimes(every, runtimes)[0] if runtimes else every
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not json_ and max(thread_list) > cores:
        stderr(f"note: {max(thread_list)} threads > {cores} available cores: those runs measure oversubscription")
    progress = _Progress(enabled=not json_ and sys.stderr.isatty())
    try:
        result = run_bench_runtimes(items, runtimes, threads=thread_list, warmup=warmup, runs=runs, rounds=rounds,
                                    timeout=timeout, progress=progress)
    finally:
        progress.close()
    written = save_bench(result, items) if save else []
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        written.append(out)
    if json_:
        print_json(result)
    else:
        m = result["machine"]
        typer.echo(f"machine: {m['cpu']}, {m['cores_available']} cores, single-core float32 GEMM peak "
                   f"{m['matmul_peak_gflops']:.1f} GFLOP/s, load {m.get('loadavg_start')}")
        for r in result["results"]:
            typer.echo(_line(r, len(runtimes) > 1))
        for p in written:
            typer.echo(f"wrote {p}")
    failed = [r for r in result["results"] if r.get("error")]
    if failed:
        stderr(f"error: {len(failed)} measurement(s) failed; first: {failed[0]['model']} {failed[0]['target']}/"
                f"{failed[0]['precision']} x{failed[0]['threads']}: {failed[0]['error']}")
        raise typer.Exit(EXIT_FAILED)


def report(
    folders: Annotated[list[Path], typer.Argument(help="Release folders written by `zoo export` (and `zoo bench`); "
                                                       "html: one, or two (OLD NEW) to show what changed.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="md, json, csv, png or html.")] = "md",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here (default: stdout; png: DIR/report.png).")] = None,
    bench_file: Annotated[Optional[Path], typer.Option("--bench", help="Bench results (default: DIR/bench.json).")] = None,
    no_diff: Annotated[bool, typer.Option("--no-diff", help="html: skip the layer-by-layer error curves of fp16/int8.")] = False,
) -> None:
    """Size, latency x threads, parity and the original's published figures, as Markdown, JSON, CSV, a PNG chart
    or one self-contained HTML page (with each artifact's faces and error curve, computed now)."""
    fmt = format_.lower().strip()
    if fmt == "html":
        if out is not None:
            check_out(folders, out)
        rep, text = html_report(folders, bench_file, diff=not no_diff)
        written = None
        if out is not None:
            atomic_write_text(out, text)
            written = out
    else:
        rep, text, written = write_report(folders, fmt, out, bench_file)
    if not rep["bench"]["present"]:
        stderr(f"note: no {BENCH_FILE} found: sizes and parity only (run `zoo bench DIR` first for latency)")
    if text is not None and written is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif written is not None:
        stderr(f"wrote {written}")
