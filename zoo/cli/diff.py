"""`zoo diff`: which layer of an artifact departs from PyTorch, and where its error grows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from zoo.api import diff_raw
from zoo.validation.diff import worst
from zoo.cli.common import CheckpointOpt, ImagesOpt, JsonOpt, RuntimeOpt, StderrWarnings, ThreadsOpt, stderr
from zoo.core.errors import ZooError

#: rows of unmapped tensor names printed in the text table before "..."
UNMAPPED_SHOWN = 12


def _fmt(v: float | None) -> str:
    return "inf/nan" if v is None else f"{v:.3g}"


def table(res: dict) -> str:
    r, extra = res["result"], res["extra"]
    tol = extra["tolerance"]
    lines = [f"{r['artifact']}  runtime {r['runtime']}  {extra['precision']}  {r['images']} image(s)  "
             f"tolerance: max_abs <= {tol['atol']:g}" + (f" + {tol['rtol']:g} x peak|ref|" if tol["rtol"] else "")]
    mapped = [l for l in r["layers"] if l["torch"]]
    w_mod = max([12] + [len(l["torch"]) for l in mapped])
    w_rt = min(48, max([14] + [len(l["runtime"]) for l in mapped]))
    lines.append(f"  {'#':>3}  {'torch module':<{w_mod}}  {'runtime tensor':<{w_rt}}  {'shape':<14}  {'max_abs':>9}  "
                 f"{'mean_abs':>9}  {'rel_l2':>9}  {'cosine':>9}  {'growth':>8}")
    for i, l in enumerate(mapped, 1):
        name = l["runtime"] if len(l["runtime"]) <= w_rt else "…" + l["runtime"][-(w_rt - 1):]
        shape = "x".join(str(v) for v in l["shape"])
        g = extra["growth"][i - 1]
        lines.append(f"  {i:>3}  {l['torch']:<{w_mod}}  {name:<{w_rt}}  {shape:<14}  {_fmt(l['max_abs']):>9}  "
                     f"{_fmt(l['mean_abs']):>9}  {_fmt(l['rel_l2']):>9}  {l['cosine'] if l['cosine'] is not None else float('nan'):>9.6f}  "
                     f"{'x' + format(g, '.3g') if g is not None else '':>8}" + ("  OVER" if l["over"] else ""))
    lines.append(f"first divergent: {r['first_divergent'] or 'none (every layer within tolerance)'}")
    if r["largest_growth"]:
        g = max(extra["growth"])
        lines.append(f"largest growth: {r['largest_growth']} (x{g:.3g} its input's relative error)")
    else:
        lines.append("largest growth: none (no layer over tolerance)")
    lines.append("worst: " + ", ".join(f"{l['torch']} (rel_l2 {_fmt(l['rel_l2'])})" for l in worst(r)))
    unm = [l for l in r["layers"] if not l["torch"]]
    odd = {n: why for n, why in extra["unmapped_why"].items() if why != "no PyTorch module"}
    for n, why in odd.items():
        lines.append(f"not compared: {n}: {why}")
    if unm:
        shown = ", ".join(f"{l['runtime']}" for l in unm[:UNMAPPED_SHOWN])
        more = f", ... ({len(unm) - UNMAPPED_SHOWN} more: --json lists them all)" if len(unm) > UNMAPPED_SHOWN else ""
        lines.append(f"unmapped runtime tensors ({len(unm)}, compared with no PyTorch module): {shown}{more}")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    """Relative L2 error against depth (position in PyTorch's execution order), one line per artifact."""
    try:
        import matplotlib  # optional (report extra): only --plot needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional, as above
    except ImportError:
        raise ZooError("--plot needs matplotlib: pip install 'ultraface-zoo[report]'") from None
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    for res in results:
        r = res["result"]
        rows = [l for l in r["layers"] if l["torch"]]
        ys = [max(l["rel_l2"], 1e-9) if l["rel_l2"] is not None else float("nan") for l in rows]
        label = f"{Path(r['artifact']).name} ({r['runtime']})"
        ax.plot(range(1, len(rows) + 1), ys, marker=".", label=label)
        if r["first_divergent"]:
            k = next(i for i, l in enumerate(rows, 1) if l["torch"] == r["first_divergent"])
            ax.annotate(r["first_divergent"], (k, ys[k - 1]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("depth (mapped layer, in PyTorch execution order)")
    ax.set_ylabel("relative L2 error vs PyTorch")
    ax.set_title("zoo diff: per-layer error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise ZooError(f"cannot write the plot {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def diff(
    artifacts: Annotated[list[Path], typer.Argument(help="Artifact primary files (.onnx, .mnn, .param, .tflite, ...).")],
    images: ImagesOpt = None,
    checkpoint: CheckpointOpt = None,
    runtime: RuntimeOpt = None,
    threads: ThreadsOpt = 1,
    atol: Annotated[Optional[float], typer.Option(
        "--atol", help="Per-layer tolerance on the max absolute error (default: the precision tier's, relative to each tensor's peak).")] = None,
    json_: JsonOpt = False,
    plot_file: Annotated[Optional[Path], typer.Option("--plot", help="Draw relative error against depth into this PNG.")] = None,
) -> None:
    """Compare an artifact with PyTorch layer by layer: the first layer over tolerance and where the error grows."""
    results = diff_raw(list(artifacts), images, checkpoint, runtime=runtime, threads=threads, atol=atol,
                       warnings=StderrWarnings())
    if plot_file is not None:
        plot(results, plot_file)
    if json_:
        objs = [r["result"] for r in results]
        typer.echo(json.dumps(objs[0] if len(objs) == 1 else {"results": objs}, indent=2))
        return
    for res in results:
        typer.echo(table(res))
    if plot_file is not None:
        stderr(f"plot: {plot_file}")
