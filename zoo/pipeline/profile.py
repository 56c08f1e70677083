"""`--profile`: where an export's or a release's time went, printed and written to DIR/timings.json.

timings.json sits beside the manifest, not in it (like bench.json): it changes with every run and
machine, while the manifest stays byte-reproducible. One row per worker job:

    {"model", "what" (artifact label, "onnx intermediate raw", "pytorch reference", ...), "ok",
     "total", "waiting", "startup", "imports", "conversion", "quantization", "reference",
     "inference", "other", "cpu"}   (seconds; "cpu": the CPU time the job used, its own subprocesses
     included, so cpu > total - waiting means it ran on more than one core), and "torch": whether that
     worker loaded torch

and one row per model with "what": "all" and its wall time.
"""
from __future__ import annotations

import json
from pathlib import Path

from zoo.core.fsutil import atomic_write_text

TIMINGS = "timings.json"
COLUMNS = ("waiting", "startup", "imports", "conversion", "quantization", "reference", "inference", "other", "total",
           "cpu")


def write_timings(out: Path, command: list[str], jobs: int, wall: float, rows: list[dict]) -> Path:
    path = Path(out) / TIMINGS
    atomic_write_text(path, json.dumps({"command": command, "jobs": jobs, "wall": round(wall, 3), "rows": rows},
                                       indent=1) + "\n")
    return path


def render(rows: list[dict], wall: float) -> str:
    """A fixed-width table of the rows, then the wall time."""
    head = f"{'job':<34} " + " ".join(f"{c[:7]:>7}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("what") == "all":
            continue
        label = f"{r['model']} {r['what']}"[:34]
        cells = " ".join(f"{r[c]:7.2f}" if isinstance(r.get(c), (int, float)) else f"{'-':>7}" for c in COLUMNS)
        lines.append(f"{label:<34} {cells}" + ("" if r.get("ok", True) else "  FAILED"))
    for r in rows:
        if r.get("what") == "all":
            lines.append(f"{r['model']}: {r['wall']:.2f} s")
    cpu = [r["cpu"] for r in rows if isinstance(r.get("cpu"), (int, float))]
    lines.append(f"wall: {wall:.2f} s" + (f"; cpu: {sum(cpu):.2f} s over the jobs" if cpu else ""))
    return "\n".join(lines)
