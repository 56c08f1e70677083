"""The report as CSV: one row per artifact x thread count, then the original's published rows."""
from __future__ import annotations

import csv
import io

CSV_COLUMNS = [
    "source", "model", "target", "precision", "head", "runtime", "threads", "size_bytes", "size_mib",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "spread_pct", "init_ms", "cold_init_ms", "peak_rss_mb",
    "gflops", "roofline_ratio", "macs", "params", "parity_passed", "det_matched", "det_reference", "det_extra",
    "det_missed", "det_min_iou", "det_max_score_change", "evidence_images", "evidence_faces",
    *[f"{b}_{k}" for b in ("lt16", "16to64", "gt64") for k in ("matched", "missed", "extra")],
    "primary", "note",
]
_BUCKET_COLUMNS = {"<16": "lt16", "16-64": "16to64", ">64": "gt64"}  # the size buckets, as column names


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
                "det_extra": p.get("extra"), "det_missed": p.get("missed"), "det_min_iou": p.get("min_iou"),
                "det_max_score_change": p.get("max_score_change"),
                "evidence_images": (p.get("evidence") or {}).get("images"), "evidence_faces": (p.get("evidence") or {}).get("faces"),
                "primary": a["primary"], "note": "stale bench" if a["stale"] else ""}
        for bucket, col in _BUCKET_COLUMNS.items():
            for k in ("matched", "missed", "extra"):
                base[f"{col}_{k}"] = ((p.get("by_size") or {}).get(bucket) or {}).get(k)
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
