"""The report as Markdown: the original's tables (size, latency by threads, accuracy) beside ours, and parity."""
from __future__ import annotations

import math
from pathlib import Path

from zoo.validation.compat import markdown_section
from zoo.validation.parity import EVIDENCE_RULED, SIZE_BUCKETS
from zoo.validation.report.collect import result_for


def _f(v, nd=1, dash="—") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return dash
    if isinstance(v, int) and nd == 0:
        return f"{v:,}"
    return f"{v:.{nd}f}"


def _ms(v) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _g(v) -> str:
    return "—" if v is None else f"{v:.2g}"


def _art_name(a: dict) -> str:
    return f"{a['target']} {a['precision']} ({a['head']})"


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if x == "r" else "---" for x in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _bucket_cell(by: dict | None, bucket: str) -> str:
    c = (by or {}).get(bucket)
    if not c or c.get("matched") is None:
        return "—"
    return " / ".join("—" if c.get(k) is None else str(c[k]) for k in ("matched", "missed", "extra"))


def _fidelity(arts: list[dict]) -> list[str]:
    """Where each artifact loses faces: matched / missed / extra per face height, min IoU, max score change."""
    L = ["### Fidelity", ""]
    L.append("Faces of PyTorch's detections matched / missed by the artifact, and its extra detections, by face "
             "height in pixels at the photo's scale (an extra one by its own height); the evidence (reference faces "
             "on how many photos) behind each verdict; the lowest IoU of a matched face and the largest change of "
             "a matched face's score. A face counts as kept when the artifact finds it with a score down to the "
             "threshold minus the tier's margin (0.05 for int8); \"strict\" counts with no margin at all. — : not "
             "recorded (a manifest written before these counts).")
    L.append("")
    rows = []
    for a in arts:
        p = a["parity"]
        if p.get("passed") is None:
            continue
        ev = p.get("evidence") or {}
        faces = f"{ev['faces']} faces / {ev['images']} img" if ev.get("faces") is not None and ev.get("images") is not None else "—"
        if ev.get("strong") is False and a["precision"].split("-")[0] in EVIDENCE_RULED:
            faces += " (weak)"
        total = (" / ".join("—" if p.get(k) is None else str(p[k]) for k in ("matched", "missed", "extra"))
                 if p.get("matched") is not None else "—")
        st = p.get("strict")
        strict = (" / ".join("—" if st.get(k) is None else str(st[k]) for k in ("matched", "missed", "extra"))
                  if st and st.get("matched") is not None else "—")
        rows.append([a["model"], a["target"], a["precision"], a["head"], faces, total, strict,
                     *[_bucket_cell(p.get("by_size"), b) for b in SIZE_BUCKETS],
                     _f(p.get("min_iou"), 4), _g(p.get("max_score_change"))])
    L += _table(["model", "target", "precision", "head", "evidence", "all: matched / missed / extra", "strict",
                 *[f"{b} px" for b in SIZE_BUCKETS], "min IoU", "max score change"], rows,
                ["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "r"])
    L.append("")
    return L


def render_markdown(rep: dict) -> str:
    arts, ref, bench = rep["artifacts"], rep["reference"], rep["bench"]
    model_ids = [m["id"] for m in rep["models"]]
    L: list[str] = []
    L.append(f"## UltraFace release: {', '.join(model_ids) or 'no artifacts'}")
    L.append("")
    if not bench["present"]:
        L.append("> **No bench.json**: this report holds sizes and parity only. Run `zoo bench DIR` on the target "
                 "machine, then `zoo report DIR` again, to add latency, load time and memory.")
        L.append("")
    if rep["models"]:
        L.append("| model | arch | input | parameters | MACs |")
        L.append("|---|---|---|---:|---:|")
        for m in rep["models"]:
            size = "x".join(map(str, m["input_size"])) if m.get("input_size") else "—"
            macs = f"{m['macs'] / 1e6:.1f} M" if m.get("macs") else "—"
            L.append(f"| {m['id']} | {m.get('arch') or '—'} | {size} | {_f(m.get('params'), 0)} | {macs} |")
        L.append("")

    # -- sizes
    L.append("### Model size")
    L.append("")
    L.append("Model files of each artifact (metadata sidecars excluded). MiB = 2^20 bytes; "
             "the original's \"MB\" are MiB of its `.pth` checkpoints.")
    L.append("")
    rows = []
    for a in arts:
        rows.append([a["model"], a["target"], a["precision"], a["head"], ", ".join(Path(f).name for f in a["files"]),
                     f"{a['size_bytes']:,}", f"{a['size_mib']:.2f}"])
    for r in ref["sizes_mb"]:
        rows.append([f"*{r['model']}*", "*published*", "", "", "*original README*", "", f"*{r['size_mb']:.2f}*"])
    L += _table(["model", "target", "precision", "head", "files", "bytes", "MiB"], rows, ["l", "l", "l", "l", "l", "r", "r"])
    L.append("")

    # -- latency, like the original's cores table
    threads = bench["threads"]
    cols = sorted(set(threads) | set(ref["latency"]["cores"]))
    lat = ref["latency"]
    L.append("### Latency")
    L.append("")
    if bench["present"]:
        m, s = bench.get("machine") or {}, bench.get("settings") or {}
        L.append(f"Median (p50) ms per image, batch 1, at each model's input size, by thread count. Ours: {m.get('cpu', '?')}, {m.get('cores_available', '?')} cores available, "
                 f"{s.get('runs', '?')} runs x {s.get('rounds', '?')} interleaved rounds after {s.get('warmup', '?')} warm-up, "
                 f"each in its own process. Reference rows: {lat['device']}, {lat['runtime']} {lat['precision']}, "
                 f"{lat['input']}, published by the original (cores).")
    else:
        L.append(f"Not measured (no bench.json). Reference rows: {lat['device']}, {lat['runtime']} {lat['precision']}, "
                 f"{lat['input']}, published by the original (cores).")
    L.append("")
    rows = []
    for a in arts:
        if not a["bench"]:
            continue
        runtime = next((r.get("runtime") for r in a["bench"] if r.get("runtime")), a["target"])
        cells = []
        for t in cols:
            r = result_for(a, t)
            cells.append("failed" if r and r.get("error") else _ms(r.get("p50_ms")) if r else "—")
        rows.append([a["model"], f"{a['target']} ({runtime})", a["precision"], a["head"], *cells])
    for r in lat["rows"]:
        by = dict(zip(lat["cores"], r["ms"]))
        rows.append([f"*{r['model']}*", f"*{lat['runtime']}, {lat['device']}*", f"*{lat['precision']}*", "",
                     *[f"*{by[t]:g}*" if t in by else "—" for t in cols]])
    L += _table(["model", "target (runtime)", "precision", "head", *[f"{t} thread{'s' if t > 1 else ''}" for t in cols]],
                rows, ["l", "l", "l", "l", *["r"] * len(cols)])
    L.append("")

    if bench["present"]:
        m = bench.get("machine") or {}
        L.append("#### Details")
        L.append("")
        L.append(f"Spread = (max - min) / median of the per-round medians. GFLOP/s = 2 x MACs / p50. "
                 f"Roofline = GFLOP/s / (single-core float32 GEMM peak x min(threads, cores)); "
                 f"this machine's measured peak: {_f(m.get('matmul_peak_gflops'), 1)} GFLOP/s per core "
                 f"(median call {_f(m.get('matmul_median_gflops'), 1)}). Init = creating the runtime session "
                 f"with the runtime already imported (cold, with import: separate column). "
                 f"Latency is `runner.infer` as an application pays it: the runtime plus host-side decoding of raw heads. "
                 f"fp16 and int8 use the same MAC count (effective GFLOP/s). "
                 f"Peak RSS = the whole worker process (Python, NumPy, OpenCV and the runtime).")
        L.append("")
        rows = []
        for a in arts:
            for r in a["bench"]:
                if r.get("error"):
                    rows.append([a["model"], _art_name(a), str(r["threads"]), f"failed: {r['error'][:80]}",
                                 *[""] * 10])
                    continue
                rows.append([
                    a["model"], _art_name(a), str(r["threads"]), _ms(r.get("p50_ms")), _ms(r.get("p90_ms")),
                    _ms(r.get("p99_ms")), _ms(r.get("min_ms")), _ms(r.get("mean_ms")),
                    "—" if r.get("spread_pct") is None else f"{r['spread_pct']:.0f}%",
                    _ms(r.get("init_ms")), _f(r.get("cold_init_ms"), 0), _f(r.get("peak_rss_mb"), 0),
                    _f(r.get("gflops"), 1),
                    "—" if r.get("roofline_ratio") is None else f"{100 * r['roofline_ratio']:.0f}%",
                ])
        L += _table(["model", "artifact", "threads", "p50", "p90", "p99", "min", "mean", "spread", "init ms",
                     "cold init ms", "peak RSS MiB", "GFLOP/s", "roofline"], rows,
                    ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"])
        L.append("")

    # -- parity
    L.append("### Parity with PyTorch")
    L.append("")
    L.append("Each artifact run in its own runtime on real photos and compared with the PyTorch model "
             "(tolerances per precision: see the README).")
    L.append("")
    rows = []
    for a in arts:
        p = a["parity"]
        status = "not run" if p.get("passed") is None else ("PASS" if p["passed"] else "**FAIL**")
        mx = p.get("max_abs") or {}
        rows.append([a["model"], a["target"], a["precision"], a["head"], status,
                     f"{p.get('matched', '—')}/{p.get('reference', '—')}" if p.get("reference") is not None else "—",
                     str(p.get("extra", "—")), _g(mx.get("scores")), _g(mx.get("boxes"))])
    for f in rep["failed"]:
        rows.append([f["model"], f.get("target", "?"), f.get("precision", "?"), f.get("head", "?"),
                     "**export failed**", "—", "—", "—", f"{str(f.get('error', ''))[:80]}"])
    L += _table(["model", "target", "precision", "head", "parity", "detections matched", "extra",
                 "max abs diff scores", "boxes"], rows, ["l", "l", "l", "l", "l", "r", "r", "r", "r"])
    L.append("")
    L += _fidelity(arts)
    for c in rep.get("compat") or []:  # `zoo compat`'s compat.json beside the manifest
        L += markdown_section(c["doc"], c["problem"], Path(c["folder"]).name, c.get("current"))

    # -- accuracy, published
    L.append("### Accuracy (published)")
    L.append("")
    L.append("WIDER FACE val AP, single scale, Easy / Medium / Hard, as published by the original "
             "(not re-measured here; parity above shows our artifacts compute what its checkpoints compute).")
    L.append("")
    rows = [[f"*{r['model']}*", " / ".join(f"{v:g}" for v in r["320x240"]), " / ".join(f"{v:g}" for v in r["640x480"])]
            for r in ref["widerface_ap"]]
    L += _table(["model", "320x240", "640x480"], rows, ["l", "r", "r"])
    L.append("")

    if rep["notes"]:
        L.append("### Notes")
        L.append("")
        L += [f"- {n}" for n in rep["notes"]]
        L.append("")
    if bench["present"]:
        m = bench.get("machine") or {}
        L.append(f"<sub>Measured {bench.get('timestamp') or ''} on {m.get('cpu', '?')} ({', '.join(m.get('cpu_flags') or [])}), "
                 f"{m.get('cores_available', '?')}/{m.get('cores_logical', '?')} cores, {m.get('platform', '')}, "
                 f"Python {m.get('python', '')}, load average {m.get('loadavg_start')} → {m.get('loadavg_end')}. "
                 f"Reference rows (italic) are the original's published figures on other hardware.</sub>")
        L.append("")
    return "\n".join(L)
