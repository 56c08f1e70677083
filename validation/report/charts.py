"""The HTML report's charts, as inline SVG (zoo.validation.report.svg): size against latency per thread
count, faces kept per precision, the original's published figures, and the layer-by-layer error."""
from __future__ import annotations

import math

from zoo.validation.report.collect import result_for
from zoo.validation.report.svg import (PALETTE, SHAPES, Axes, Svg, legend, legend_height, log_ticks, nice_ticks,
                                       text_width)

PUBLISHED_GREY = "#8a8a8a"


def _colors(keys: list[str]) -> dict[str, str]:
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


def _shape(precision: str) -> str:
    """fp32 circle, fp16 square, int8 triangle; a flavour (int8-io, int8-weight, ...) a diamond."""
    return SHAPES.get(precision, "diamond")


def size_latency(rep: dict) -> str | None:
    """One panel per thread count (up to four): p50 latency against model size, whiskers = the spread
    of the round medians; the original's published .pth sizes as dashed lines. None without a bench."""
    arts = [a for a in rep["artifacts"] if any(not r.get("error") and r.get("p50_ms") is not None for r in a["bench"])]
    threads = list(rep["bench"]["threads"])[:4]
    if not arts or not threads:
        return None
    targets = list(dict.fromkeys(a["target"] for a in arts))
    models = list(dict.fromkeys(a["model"] for a in arts))
    color = _colors(targets)
    pw, ph, left, top = 380, 260, 62, 34
    width = left + len(threads) * (pw + 24) + 10
    refs = [r for r in rep["reference"]["sizes_mb"] if r["model"].startswith("version-")]
    items = [(t, {"shape": "circle", "color": color[t]}) for t in targets]
    items += [(p, {"shape": _shape(p), "color": "#444", "filled": True})
              for p in dict.fromkeys(a["precision"] for a in arts)]
    if len(models) > 1:
        items += [(m, {"shape": "circle", "color": "#444", "filled": i == 0}) for i, m in enumerate(models[:2])]
    items += [(f"{r['model']} .pth, published", {"line": "5 3", "color": PUBLISHED_GREY}) for r in refs]
    lh = legend_height(items, width - 20)
    height = top + ph + 48 + lh
    svg = Svg(width, height, f"p50 latency against model size, {len(arts)} artifacts, by thread count")
    xmax = max([a["size_mib"] for a in arts] + [r["size_mb"] for r in refs]) * 1.12
    for i, t in enumerate(threads):
        x0 = left + i * (pw + 24)
        pts = []
        for a in arts:
            r = result_for(a, t)
            if r and not r.get("error") and r.get("p50_ms") is not None:
                rounds = [v for v in r.get("p50_rounds_ms") or [] if v is not None] or [r["p50_ms"]]
                pts.append((a, r["p50_ms"], min(rounds + [r["p50_ms"]]), max(rounds + [r["p50_ms"]])))
        ymax = max([hi for _, _, _, hi in pts] + [1.0]) * 1.1
        ax = Axes(svg, x0, top, x0 + pw, top + ph, (0, xmax), (0, ymax))
        ax.frame([v for v in nice_ticks(0, xmax, 4) if v <= xmax],
                 [v for v in nice_ticks(0, ymax, 5) if v <= ymax], xlabel="model size (MiB)",
                 ylabel="p50 latency (ms)" if i == 0 else "", title=f"{t} thread{'s' if t > 1 else ''}")
        for r in refs:
            x = ax.px(r["size_mb"])
            svg.line(x, top, x, top + ph, stroke=PUBLISHED_GREY, dash="5 3")
        for a, y, lo, hi in pts:
            x = ax.px(a["size_mib"])
            if hi > lo:
                svg.line(x, ax.py(lo), x, ax.py(hi), stroke=color[a["target"]], width=1.2)
            svg.marker(x, ax.py(y), _shape(a["precision"]), color[a["target"]], filled=models.index(a["model"]) % 2 == 0,
                       title=f"{a['model']} {a['label']}: {a['size_mib']:.3f} MiB, p50 {y:.2f} ms at {t} thread(s)")
    legend(svg, items, 10, top + ph + 58, width - 20)
    return svg.render()


def faces_kept(rep: dict) -> str | None:
    """Faces kept (matched / reference, the tier's rule) of each artifact, int8 and fp16 beside fp32, one
    row per model, target and head."""
    arts = [a for a in rep["artifacts"] if a["parity"].get("reference")]
    if not arts:
        return None
    rows = list(dict.fromkeys((a["model"], a["target"], bool(a.get("dynamic"))) for a in arts))
    precs = list(dict.fromkeys(a["precision"] for a in arts))
    color = _colors(precs)
    kept = {id(a): a["parity"]["matched"] / a["parity"]["reference"] for a in arts if a["parity"].get("matched") is not None}
    lo = min(list(kept.values()) + [0.97])
    lo = max(0.0, (int(lo * 100) - 1) / 100)
    left = max(text_width(f"{m} {t}{' dynamic' if d else ''}") for m, t, d in rows) + 20
    left = min(left, 260)
    pw, rh, top = 460, 8 + 6 * len(precs), 34
    items = [(p, {"shape": _shape(p), "color": color[p]}) for p in precs]
    width = left + pw + 30
    lh = legend_height(items, width - 20)
    height = top + rh * len(rows) + 44 + lh
    svg = Svg(width, height, f"faces kept against PyTorch per artifact, {len(arts)} artifacts")
    ax = Axes(svg, left, top, left + pw, top + rh * len(rows), (lo, 1.0), (0, len(rows)))
    ticks = [v for v in nice_ticks(lo, 1.0, 5) if lo <= v <= 1.0]
    ax.frame(ticks, [], xlabel="faces kept (matched / PyTorch's faces, the tier's rule)",
             title="Faces kept: int8 and fp16 against fp32", xfmt=lambda v: f"{v * 100:.0f}%" if v * 100 == int(v * 100) else f"{v * 100:.1f}%")
    for i, (m, t, d) in enumerate(rows):
        y = top + rh * i + rh / 2
        if i:
            svg.line(left, top + rh * i, left + pw, top + rh * i, stroke="#f0f0f0")
        svg.text(left - 6, y + 4, f"{m} {t}{' dynamic' if d else ''}", anchor="end", max_width=left - 8)
        for a in arts:
            if (a["model"], a["target"], bool(a.get("dynamic"))) != (m, t, d) or id(a) not in kept:
                continue
            p = a["parity"]
            x, _ = ax.inside(kept[id(a)], 0)
            k = precs.index(a["precision"])
            svg.marker(x, top + rh * i + 7 + 6 * k, _shape(a["precision"]), color[a["precision"]], r=4,
                       filled=not a.get("min_runtime"),
                       title=f"{m} {a['label']}: {p['matched']}/{p['reference']} kept, {p.get('extra')} extra")
    legend(svg, items, 10, top + rh * len(rows) + 54, width - 20)
    return svg.render()


def published(rep: dict) -> str:
    """The original's published figures, drawn apart and in grey: model file sizes and the Raspberry Pi 4B
    latencies by cores. Published by its author, never measured here."""
    ref = rep["reference"]
    sizes, lat = ref["sizes_mb"], ref["latency"]
    left = max(text_width(r["model"]) for r in sizes) + 16
    pw, rh, top = 240, 20, 40
    h1 = top + rh * len(sizes) + 40
    x2 = left + pw + 90
    pw2 = 260
    lat_items = [(r["model"], {"line": ["", "6 3", "2 3"][i % 3], "color": ["#555", "#777", "#999"][i % 3]})
                 for i, r in enumerate(lat["rows"])]
    width = x2 + pw2 + 20
    lh = legend_height(lat_items, pw2 + 60)
    height = max(h1, top + 200 + 40 + lh) + 22
    svg = Svg(width, height, "the original project's published model sizes and Raspberry Pi 4B latencies "
                             "(published, not measured)", cls="chart published")
    svg.text(10, 16, "Published by the original project, not measured here", weight="bold", size=12, fill="#555")
    xmax = max(r["size_mb"] for r in sizes) * 1.15
    ax = Axes(svg, left, top, left + pw, top + rh * len(sizes), (0, xmax), (0, len(sizes)))
    ax.frame([v for v in nice_ticks(0, xmax, 4) if v <= xmax], [], xlabel="file size (MiB, published)",
             title="Model file size")
    for i, r in enumerate(sizes):
        y = top + rh * i
        svg.rect(left, y + 4, ax.px(r["size_mb"]) - left, rh - 8, fill="#d9d9d9", stroke=PUBLISHED_GREY,
                 dash="3 2", title=f"{r['model']}: {r['size_mb']} MiB (published)")
        svg.text(left - 6, y + rh / 2 + 4, r["model"], anchor="end", max_width=left - 8)
        svg.text(ax.px(r["size_mb"]) + 4, y + rh / 2 + 4, f"{r['size_mb']:g}", fill="#555", max_width=60)
    cores = lat["cores"]
    ymax = max(v for r in lat["rows"] for v in r["ms"]) * 1.15
    ax2 = Axes(svg, x2, top, x2 + pw2, top + 200, (min(cores) - 0.3, max(cores) + 0.3), (0, ymax))
    ax2.frame(cores, [v for v in nice_ticks(0, ymax, 5) if v <= ymax], xlabel="cores",
              title=f"{lat['device']} · {lat['runtime']} {lat['precision']} · {lat['input']}", xfmt=lambda v: f"{v:g}")
    svg.text(x2 - 40, top + 100, "ms (published)", anchor="middle", rotate=True, fill="#555")
    for (label, style), r in zip(lat_items, lat["rows"]):
        pts = [(ax2.px(c), ax2.py(v)) for c, v in zip(cores, r["ms"])]
        svg.polyline(pts, stroke=style["color"], dash=style["line"] or None)
        for (x, y), c, v in zip(pts, cores, r["ms"]):
            svg.marker(x, y, "circle", style["color"], filled=False, r=3.5,
                       title=f"{r['model']}: {v:g} ms on {c} core(s) (published)")
    legend(svg, lat_items, x2 - 40, top + 200 + 44, pw2 + 60)
    return svg.render()


def error_curve(d: dict, label: str) -> str:
    """The relative L2 error of each mapped layer (PyTorch's execution order) against PyTorch, log scale;
    layers over tolerance in red squares, the first one marked."""
    layers = [l for l in d["layers"] if l.get("torch")]
    vals = [max(l["rel_l2"], 1e-7) if l.get("rel_l2") is not None else None for l in layers]
    finite = [v for v in vals if v is not None] or [1e-3]
    lo, hi = min(finite), max(finite)
    ticks = log_ticks(lo, hi)
    if len(ticks) < 2:
        ticks = [ticks[0], ticks[0] * 10]
    width, height, left, top, pw, ph = 620, 250, 64, 28, 530, 170
    svg = Svg(width, height, f"layer-by-layer relative error of {label} against PyTorch")
    ax = Axes(svg, left, top, left + pw, top + ph, (0.5, len(layers) + 0.5), (ticks[0], ticks[-1]), ylog=True)
    step = max(1, len(layers) // 10)
    ax.frame(list(range(1, len(layers) + 1, step)), ticks, xlabel="layer (mapped, in PyTorch's execution order)",
             ylabel="relative L2 error", title=f"{d.get('runtime', '')}: {len(layers)} layers",
             yfmt=lambda v: f"1e{int(round(math.log10(v)))}")
    pts = [(ax.px(i + 1), ax.py(v)) for i, v in enumerate(vals) if v is not None]
    svg.polyline(pts, stroke="#0072b2", width=1.3)
    first = d.get("first_divergent")
    for i, (l, v) in enumerate(zip(layers, vals)):
        if v is None:
            continue
        over = bool(l.get("over"))
        svg.marker(ax.px(i + 1), ax.py(v), "square" if over else "circle", "#d55e00" if over else "#0072b2", r=3 if not over else 3.5,
                   title=f"{i + 1}. {l['torch']} ({l.get('runtime', '')}): rel L2 {v:.3g}, max abs "
                         f"{l['max_abs']:.3g}" + (" OVER tolerance" if over else "") if l.get("max_abs") is not None
                   else f"{i + 1}. {l['torch']}")
        if l["torch"] == first:
            x = ax.px(i + 1)
            svg.line(x, top, x, top + ph, stroke="#d55e00", dash="4 3")
            right = x > left + pw * 0.6
            svg.text(x - 4 if right else x + 4, top + 12, f"first over tolerance: {first}",
                     anchor="end" if right else "start", fill="#a33c00",
                     max_width=(x - left - 6) if right else (left + pw - x - 6))
    svg.marker(left + 6, height - 10, "circle", "#0072b2", r=3)
    svg.text(left + 14, height - 6, "within tolerance", fill="#555", max_width=110)
    svg.marker(left + 130, height - 10, "square", "#d55e00", r=3.5)
    svg.text(left + 138, height - 6, "over tolerance (max abs > atol + rtol x peak)", fill="#555", max_width=300)
    return svg.render()

