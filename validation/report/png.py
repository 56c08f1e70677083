"""The report as a PNG chart: latency against size per thread count, or the sizes alone without a bench."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

from zoo.validation.report.collect import result_for
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes

_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
DPI = 110
#: a generous average character width, in ems, of matplotlib's default sans-serif face (DejaVu Sans)
_EM = 0.62


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points."""
    per_line = max(20, int(width_in * 72 / (fontsize * _EM)))
    return "\n".join(textwrap.wrap(text, per_line)) or text


def _legend_columns(labels: list[str], width_in: float, fontsize: float) -> int:
    """The most legend columns whose widest entry (marker + label) still fits ``width_in`` inches."""
    entry = (max(len(l) for l in labels) * _EM + 4.5) * fontsize / 72 if labels else 1.0
    return max(1, min(len(labels), int((width_in - 0.3) / entry)))


def render_png(rep: dict, out: Path) -> Path:
    """Latency (p50, whiskers = spread of the round medians) against size, one panel per thread count.

    Without bench results: the sizes as horizontal bars, with the original's published sizes as lines.
    """
    try:
        import matplotlib  # optional (report extra): imported when a chart is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional (report extra), after the Agg backend is chosen
        from matplotlib.lines import Line2D  # optional (report extra)
    except ImportError:
        raise ZooError("--format png needs matplotlib: pip install 'ultraface-zoo[report]'") from None

    arts = rep["artifacts"]
    targets = list(dict.fromkeys(a["target"] for a in arts))
    models = list(dict.fromkeys(a["model"] for a in arts))
    cmap = plt.get_cmap("tab10")
    color = {t: cmap(i % 10) for i, t in enumerate(targets)}
    threads = [t for t in rep["bench"]["threads"]][:4]
    measured = [a for a in arts if any(not r.get("error") for r in a["bench"])]
    title = f"UltraFace {', '.join(models)}"
    if measured and threads:
        fig, axes = plt.subplots(1, len(threads), figsize=(6.2 * len(threads), 5.2), squeeze=False)
        fills = ["full", "none", "left", "bottom"]
        for ax, t in zip(axes[0], threads):
            for a in measured:
                r = result_for(a, t)
                if not r or r.get("error"):
                    continue
                rounds = [v for v in r.get("p50_rounds_ms") or [] if v is not None] or [r["p50_ms"]]
                y = r["p50_ms"]
                yerr = [[max(0.0, y - min(rounds))], [max(0.0, max(rounds) - y)]]
                fill = fills[models.index(a["model"]) % len(fills)]
                ax.errorbar([a["size_mib"]], [y], yerr=yerr, fmt=_MARKERS.get(a["precision"], "D"), color=color[a["target"]],
                            ms=10, capsize=4, fillstyle=fill, mew=1.8, elinewidth=1.2)
                if len(measured) <= 6:  # more points: the legend says it, labels would collide
                    ax.annotate(f"{a['target']} {a['precision']}", (a["size_mib"], y), textcoords="offset points",
                                xytext=(8, 6), fontsize=8, color="0.25")
            ax.set_title(f"{t} thread{'s' if t > 1 else ''}", fontsize=12)
            ax.set_xlabel("model size (MiB)")
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
            ax.set_xlim(0, 1.22 * max(a["size_mib"] for a in measured))
        axes[0][0].set_ylabel("latency p50 (ms), whiskers: spread of round medians")
        handles = [Line2D([], [], color=color[t], marker="o", ls="", ms=9, label=t) for t in targets]
        handles += [Line2D([], [], color="0.3", marker=_MARKERS.get(p, "D"), ls="", ms=9, label=p)
                    for p in dict.fromkeys(a["precision"] for a in arts)]
        if len(models) > 1:
            handles += [Line2D([], [], color="0.3", marker="o", ls="", ms=9, fillstyle=fills[i % len(fills)], label=m)
                        for i, m in enumerate(models)]
        width_in = fig.get_size_inches()[0]
        ncol = _legend_columns([h.get_label() for h in handles], width_in, 10)
        rows = -(-len(handles) // ncol)
        m = rep["bench"].get("machine") or {}
        head = _wrap(f"{title}: latency vs size ({m.get('cpu', 'this machine')}, batch 1, lower-left is better)",
                     width_in, 13)
        lines = head.count("\n") + 1
        # room above the panels for the title's lines and the legend's rows (inches -> figure fraction)
        top_in = 0.25 * lines + 0.24 * rows + 0.2
        fig.set_size_inches(width_in, 5.2 + top_in)
        frac = top_in / (5.2 + top_in)
        # a plain text, not suptitle: tight_layout would reserve the title's room a second time
        fig.text(0.5, 0.99, head, fontsize=13, ha="center", va="top")
        fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False,
                   bbox_to_anchor=(0.5, 1 - (0.25 * lines + 0.08) / (5.2 + top_in)), fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 1 - frac))
    else:
        fig, ax = plt.subplots(figsize=(8, 0.45 * max(4, len(arts) + 2) + 1.2))
        labels = [f"{a['model']} {a['target']} {a['precision']} ({a['head']})" for a in arts]
        ax.barh(range(len(arts)), [a["size_mib"] for a in arts], color=[color[a["target"]] for a in arts])
        ax.set_yticks(range(len(arts)), labels, fontsize=9)
        ax.invert_yaxis()
        for r, ls in zip([r for r in rep["reference"]["sizes_mb"] if r["model"].startswith("version-")], ["--", ":"]):
            ax.axvline(r["size_mb"], color="0.4", ls=ls, lw=1.2, label=f"{r['model']} .pth (published) {r['size_mb']} MiB")
        ax.set_xlabel("model size (MiB)")
        ax.set_xlim(0, 1.5 * max([a["size_mib"] for a in arts] + [1.11]))
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(_wrap(f"{title}: model size (no bench.json: run `zoo bench` for latency)",
                           fig.get_size_inches()[0] * 0.8, 11), fontsize=11)
        fig.tight_layout()
    buf = io.BytesIO()
    # bbox "tight": the canvas is grown to hold every artist (a long title or legend is never cut at an
    # edge); no Software metadata: the same report gives the same bytes
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
