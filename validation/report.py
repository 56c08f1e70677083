"""`zoo report`: the original project's tables, regenerated from our measurements.

    rep = build_report([Path("release")])        # manifest.json (+ bench.json when present) of each folder
    text = render_markdown(rep)                  # or render_csv(rep); render_png(rep, path); json.dumps(rep)

Inputs per release folder: ``manifest.json`` (sizes, parity; written by
``zoo export``) and ``bench.json`` (latency, load time, memory; written by
``zoo bench``). Without bench.json the report holds sizes and parity only and
says so. The original's published figures (from the model doc) appear as
labelled reference rows, never mixed with ours.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from zoo.errors import ZooError

MIB = float(1 << 20)
FORMATS = ("md", "json", "csv", "png")
SCHEMA_VERSION = 1

#: The original project's published figures (its README, as recorded in docs/ultraface-model.md).
PUBLISHED = {
    "source": "the original UltraFace README (measured by its author), as recorded in the model doc",
    "sizes_mb": [  # "MB" of the original = MiB of the file (version-RFB: 1,168,374-byte .pth = 1.11 MiB)
        {"model": "version-slim", "size_mb": 1.04},
        {"model": "version-RFB", "size_mb": 1.11},
        {"model": "libfacedetection v1", "size_mb": 2.58},
        {"model": "libfacedetection v2", "size_mb": 3.34},
        {"model": "RetinaFace-MobileNet-0.25", "size_mb": 1.68},
    ],
    "latency": {
        "device": "Raspberry Pi 4B", "runtime": "MNN", "precision": "int8", "input": "320x240", "cores": [1, 2, 3, 4],
        "rows": [
            {"model": "version-slim", "ms": [29, 16, 12, 9.5]},
            {"model": "version-RFB", "ms": [35, 19.6, 14.8, 11]},
            {"model": "RetinaFace-MobileNet-0.25", "ms": [46, 25, 18.5, 15]},
        ],
    },
    "widerface_ap": [  # WIDER FACE val, single scale: (easy, medium, hard)
        {"model": "libfacedetection v1 (caffe)", "320x240": [0.65, 0.5, 0.233], "640x480": [0.741, 0.683, 0.421]},
        {"model": "libfacedetection v2 (caffe)", "320x240": [0.714, 0.585, 0.306], "640x480": [0.773, 0.718, 0.485]},
        {"model": "RetinaFace-MobileNet-0.25 (MXNet)", "320x240": [0.745, 0.553, 0.232], "640x480": [0.879, 0.807, 0.481]},
        {"model": "version-slim", "320x240": [0.77, 0.671, 0.395], "640x480": [0.853, 0.819, 0.539]},
        {"model": "version-RFB", "320x240": [0.787, 0.698, 0.438], "640x480": [0.855, 0.822, 0.579]},
    ],
}


# --------------------------------------------------------------------------- gathering

def _parity_summary(p: dict | None) -> dict:
    if not p:
        return {"passed": None, "note": "parity not run"}
    d = p.get("detections") or {}
    return {
        "passed": bool(p.get("passed")),
        "images": p.get("images"),
        "matched": d.get("matched"), "reference": d.get("reference"), "missed": d.get("missed"),
        "extra": d.get("extra"), "borderline": d.get("borderline"), "min_iou": d.get("min_iou"),
        "max_abs": {k: v.get("max_abs") for k, v in (p.get("outputs") or {}).items()},
        "failures": list(p.get("failures") or []),
    }


def _model_files(a: dict) -> list[dict]:
    from zoo.meta import sidecar_path

    side = str(sidecar_path(Path(a["primary"])))
    return [f for f in a.get("files", []) if f["path"] != side]


def _key(model, target, precision, head) -> tuple:
    return (model, target, precision, head)


def build_report(folders: list[Path], bench_path: Path | None = None) -> dict:
    """The report as plain data (what ``--format json`` prints); see the module docstring."""
    from exporters.plan import read_manifest
    from validation.bench import BENCH_FILE, cost_for_meta, read_bench

    folders = [Path(f) for f in folders]
    if not folders:
        raise ZooError("give a release folder written by `zoo export`")
    if bench_path is not None and len(folders) != 1:
        raise ZooError("--bench FILE goes with exactly one release folder")
    artifacts, failed, notes, models = [], [], [], {}
    bench_docs = []
    for folder in folders:
        if not folder.exists():
            raise ZooError(f"not found: {folder}")
        manifest = read_manifest(folder)
        if folder.is_file():
            folder = folder.parent
        top = manifest.get("model") or {}
        bpath = Path(bench_path) if bench_path is not None else folder / BENCH_FILE
        bench = read_bench(bpath) if bpath.is_file() or bench_path is not None else None
        if bench is None:
            notes.append(f"{folder.name}: no {BENCH_FILE} (run `zoo bench {folder.name}`): sizes and parity only")
        else:
            bench_docs.append((folder, bpath, bench))
        by_key: dict[tuple, list[dict]] = {}
        for r in (bench or {}).get("results", []):
            by_key.setdefault(_key(r.get("model"), r.get("target"), r.get("precision"), r.get("head")), []).append(r)
        used = set()
        for a in manifest.get("artifacts", []):
            meta = a.get("meta") or {}
            model = a.get("model") or meta.get("model_id") or top.get("id", "?")
            if model not in models:
                info = (manifest.get("models") or {}).get(model) if isinstance(manifest.get("models"), dict) else None
                info = info or top
                models[model] = {"id": model, "arch": meta.get("arch", info.get("arch")),
                                 "input_size": meta.get("input_size", info.get("input_size")),
                                 "macs": None, "params": None, "_meta": meta}
            files = _model_files(a)
            size = sum(int(f.get("bytes", 0)) for f in files)
            sha = next((f.get("sha256") for f in a.get("files", []) if f["path"] == a["primary"]), None)
            k = _key(model, a["target"], a["precision"], a["head"])
            rows = sorted(by_key.get(k, []), key=lambda r: r.get("threads", 0))
            used.add(k)
            for r in rows:  # the bench already counted them: no need to build the PyTorch model
                if r.get("macs") and models[model]["macs"] is None:
                    models[model]["macs"], models[model]["params"] = r["macs"], r.get("params")
            stale = any(r.get("sha256") and sha and r["sha256"] != sha for r in rows)
            if stale:
                notes.append(f"{folder.name}: bench results of {model} {a['target']}/{a['precision']}/{a['head']} are stale "
                             f"(the file changed since `zoo bench`): re-run `zoo bench {folder.name}`")
            artifacts.append({
                "folder": str(folder), "model": model, "target": a["target"], "precision": a["precision"], "head": a["head"],
                "primary": a["primary"], "files": [f["path"] for f in files],
                "size_bytes": size, "size_mib": round(size / MIB, 3),
                "parity": _parity_summary(a.get("parity")),
                "bench": rows, "stale": stale,
            })
        for f in manifest.get("failed", []):
            failed.append({"folder": str(folder), "model": f.get("model") or top.get("id", "?"), **f})
        leftover = [k for k in by_key if k not in used]
        for k in leftover:
            notes.append(f"{folder.name}: {BENCH_FILE} has results for {' '.join(map(str, k))}, which the manifest no longer lists (ignored)")
    for m in models.values():
        meta = m.pop("_meta")
        if m["macs"] is None and meta:
            cost = cost_for_meta(meta)
            m["macs"], m["params"] = cost["macs"], cost["params"]
    machine = settings = None
    timestamp = None
    if bench_docs:
        machine = bench_docs[0][2].get("machine")
        settings = bench_docs[0][2].get("settings")
        timestamp = bench_docs[0][2].get("timestamp")
        if len({json.dumps((b.get("machine") or {}).get("cpu")) for _, _, b in bench_docs}) > 1:
            notes.append("bench results come from different machines: compare latencies within a folder only")
    threads = sorted({r["threads"] for a in artifacts for r in a["bench"] if "threads" in r})
    return {
        "schema_version": SCHEMA_VERSION,
        "folders": [str(f) for f in folders],
        "models": list(models.values()),
        "bench": {
            "present": bool(bench_docs),
            "files": [str(p) for _, p, _ in bench_docs],
            "timestamp": timestamp,
            "machine": machine,
            "settings": settings,
            "threads": threads,
        },
        "artifacts": artifacts,
        "failed": failed,
        "reference": PUBLISHED,
        "notes": notes,
    }


# --------------------------------------------------------------------------- formatting helpers

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


def _result(a: dict, threads: int) -> dict | None:
    return next((r for r in a["bench"] if r.get("threads") == threads), None)


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if x == "r" else "---" for x in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# --------------------------------------------------------------------------- markdown

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
            r = _result(a, t)
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


# --------------------------------------------------------------------------- csv

CSV_COLUMNS = [
    "source", "model", "target", "precision", "head", "runtime", "threads", "size_bytes", "size_mib",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "spread_pct", "init_ms", "cold_init_ms", "peak_rss_mb",
    "gflops", "roofline_ratio", "macs", "params", "parity_passed", "det_matched", "det_reference", "det_extra",
    "primary", "note",
]


def render_csv(rep: dict) -> str:
    """One row per artifact x thread count (one per artifact without bench), then the published reference rows."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    cost = {m["id"]: m for m in rep["models"]}
    for a in rep["artifacts"]:
        p = a["parity"]
        base = {"source": "measured", "model": a["model"], "target": a["target"], "precision": a["precision"],
                "head": a["head"], "size_bytes": a["size_bytes"], "size_mib": a["size_mib"],
                "macs": cost.get(a["model"], {}).get("macs"), "params": cost.get(a["model"], {}).get("params"),
                "parity_passed": p.get("passed"), "det_matched": p.get("matched"), "det_reference": p.get("reference"),
                "det_extra": p.get("extra"), "primary": a["primary"], "note": "stale bench" if a["stale"] else ""}
        if not a["bench"]:
            w.writerow(base)
        for r in a["bench"]:
            row = {**base, **{k: r.get(k) for k in CSV_COLUMNS if k in r and k not in ("note",)}}
            if r.get("error"):
                row["note"] = f"bench failed: {r['error']}"
            w.writerow(row)
    ref = rep["reference"]
    for r in ref["sizes_mb"]:
        w.writerow({"source": "published", "model": r["model"], "size_mib": r["size_mb"], "note": "original README: file size"})
    lat = ref["latency"]
    for r in lat["rows"]:
        for t, ms in zip(lat["cores"], r["ms"]):
            w.writerow({"source": "published", "model": r["model"], "target": lat["runtime"].lower(), "precision": lat["precision"],
                        "runtime": lat["runtime"], "threads": t, "p50_ms": ms,
                        "note": f"original README: {lat['device']}, {lat['input']}"})
    return buf.getvalue()


# --------------------------------------------------------------------------- png

_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def render_png(rep: dict, out: Path) -> Path:
    """Latency (p50, whiskers = spread of the round medians) against size, one panel per thread count.

    Without bench results: the sizes as horizontal bars, with the original's published sizes as lines.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        raise ZooError("--format png needs matplotlib: pip install 'ultraface-zoo[report]'") from None
    from zoo.fsutil import atomic_write_bytes

    arts = rep["artifacts"]
    targets = list(dict.fromkeys(a["target"] for a in arts))
    models = list(dict.fromkeys(a["model"] for a in arts))
    cmap = plt.get_cmap("tab10")
    color = {t: cmap(i % 10) for i, t in enumerate(targets)}
    threads = [t for t in rep["bench"]["threads"]][:4]
    measured = [a for a in arts if any(not r.get("error") for r in a["bench"])]
    title = f"UltraFace {', '.join(models)}"
    if measured and threads:
        fig, axes = plt.subplots(1, len(threads), figsize=(6.2 * len(threads), 5.2), sharey=True, squeeze=False)
        fills = ["full", "none", "left", "bottom"]
        for ax, t in zip(axes[0], threads):
            for a in measured:
                r = _result(a, t)
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
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 9), frameon=False,
                   bbox_to_anchor=(0.5, 0.955), fontsize=10)
        m = rep["bench"].get("machine") or {}
        fig.suptitle(f"{title}: latency vs size ({m.get('cpu', 'this machine')}, batch 1, lower-left is better)",
                     fontsize=13, y=0.995)
        fig.tight_layout(rect=(0, 0, 1, 0.9))
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
        ax.set_title(f"{title}: model size (no bench.json: run `zoo bench` for latency)", fontsize=11)
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out


# --------------------------------------------------------------------------- entry point

def write_report(folders: list[Path], fmt: str = "md", out: Path | None = None, bench_path: Path | None = None) -> tuple[dict, str | None, Path | None]:
    """Build and render. Returns (report data, text or None for png, the file written or None)."""
    from zoo.fsutil import atomic_write_text

    if fmt not in FORMATS:
        raise ZooError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")
    rep = build_report(folders, bench_path)
    if fmt == "png":
        if out is None:
            first = Path(folders[0])
            out = (first if first.is_dir() else first.parent) / "report.png"
        return rep, None, render_png(rep, out)
    text = {"md": render_markdown, "csv": render_csv}.get(fmt, lambda r: json.dumps(r, indent=2) + "\n")(rep)
    if out is not None:
        atomic_write_text(Path(out), text)
        return rep, text, Path(out)
    return rep, text, None
