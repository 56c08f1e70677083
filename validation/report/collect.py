"""The report as plain data (what `zoo report --format json` prints), gathered from manifests and bench.json."""
from __future__ import annotations

import json
from pathlib import Path

from zoo.checkpoints.loader import published
from zoo.validation.bench.cost import cost_for_meta
from zoo.validation.parity import SIZE_BUCKETS
from zoo.validation.bench.items import model_files
from zoo.validation.bench.store import BENCH_FILE, read_bench
from zoo.validation.compat import COMPAT_FILE, read_compat
from zoo.core.errors import ZooError
from zoo.core.manifest import read_manifest

MIB = float(1 << 20)
SCHEMA_VERSION = 1


def _num(v):
    """A count or measure read from a manifest (input: anything may be there): the number, else None."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def _by_size(d: dict) -> dict | None:
    """Matched, missed and extra faces per size bucket, None when the manifest predates them (or is damaged)."""
    by = d.get("by_size")
    if not isinstance(by, dict) or not all(isinstance(by.get(b), dict) for b in SIZE_BUCKETS):
        return None
    return {b: {k: _num(by[b].get(k)) for k in ("reference", "matched", "missed", "extra")} for b in SIZE_BUCKETS}


def _strict(d: dict) -> dict | None:
    """Matched, missed and extra with no score margin at all (None before these counts were recorded)."""
    st = d.get("strict")
    if not isinstance(st, dict):
        return None
    return {k: _num(st.get(k)) for k in ("matched", "missed", "extra")}


def _evidence(p: dict) -> dict | None:
    ev = p.get("evidence")
    if not isinstance(ev, dict):
        return None
    by = _dict(ev.get("by_size"))
    overlap = ev.get("overlap")
    return {"images": _num(ev.get("images")), "faces": _num(ev.get("faces")),
            "by_size": {b: _num(by.get(b)) for b in SIZE_BUCKETS} if by else None,
            "strong": ev.get("strong") if isinstance(ev.get("strong"), bool) else None,
            "min_faces": _num(ev.get("min_faces")),
            "overlap": [str(n) for n in overlap] if isinstance(overlap, list) else None}


def _text(v, limit: int = 300) -> str | None:
    return v[:limit] if isinstance(v, str) else None


def _per_image(p: dict) -> list[dict] | None:
    """Per photo: its name and counts (where an artifact departs most from PyTorch); None when not recorded."""
    rows = p.get("per_image")
    if not isinstance(rows, list):
        return None
    out = []
    for r in rows:
        if isinstance(r, dict) and isinstance(r.get("image"), str):
            out.append({"image": r["image"][:200], **{k: _num(r.get(k)) for k in (
                "reference", "matched", "missed", "extra", "borderline", "min_iou", "max_score_change")}})
    return out


def _gate(p: dict) -> list[dict]:
    """The gate photos by name and sha256 (how the report finds a photo again)."""
    ev = _dict(p.get("evidence"))
    gate = ev.get("gate")
    if not isinstance(gate, list):
        return []
    return [{"name": g["name"][:200], "sha256": _text(g.get("sha256"), 64)} for g in gate
            if isinstance(g, dict) and isinstance(g.get("name"), str)]


def _scalars(d, depth: int = 0) -> dict | None:
    """The numbers, booleans and short texts of a parity field a newer zoo records (shown as found: the
    report reads them defensively, absent = not measured); None when nothing readable is there."""
    if not isinstance(d, dict) or depth > 2:
        return None
    out = {}
    for k, v in d.items():
        if not isinstance(k, str):
            continue
        if isinstance(v, bool) or _num(v) is not None:
            out[k[:60]] = v
        elif isinstance(v, str) and len(v) <= 120:
            out[k[:60]] = v
        elif isinstance(v, dict):
            sub = _scalars(v, depth + 1)
            if sub:
                out[k[:60]] = sub
    return out or None


#: detection counts the report shows in its own columns; any other number recorded is listed as found
_SHOWN = ("reference", "matched", "missed", "extra", "borderline", "min_iou", "max_score_change", "strict", "by_size",
          "passed", "recall", "extra_rate", "borderline_missed", "borderline_extra")


def _parity_summary(p: dict | None) -> dict:
    if not p:
        return {"passed": None, "note": "parity not run"}
    d = _dict(p.get("detections"))
    failures = p.get("failures")
    more = _scalars({k: v for k, v in d.items() if k not in _SHOWN})
    return {
        "passed": bool(p.get("passed")),
        "images": _num(p.get("images")),
        **{k: _num(d.get(k)) for k in ("matched", "reference", "missed", "extra", "borderline", "min_iou", "max_score_change")},
        "strict": _strict(d),
        "by_size": _by_size(d),
        "evidence": _evidence(p),
        "max_abs": {str(k): _num(_dict(v).get("max_abs")) for k, v in _dict(p.get("outputs")).items()},
        "failures": [str(f) for f in failures] if isinstance(failures, list) else [],
        "recall": _num(d.get("recall")),
        "per_image": _per_image(p),
        "gate": _gate(p),
        # fields of newer parity results, read defensively (absent = not measured): shown as found
        "shift": _scalars(p.get("shift")),
        "detections_more": more,
    }


def result_for(a: dict, threads: int) -> dict | None:
    """The bench row of a report artifact at a thread count, None when not measured."""
    return next((r for r in a["bench"] if r.get("threads") == threads), None)


def build_report(folders: list[Path], bench_path: Path | None = None) -> dict:
    """The report of release folders: their manifest.json, and bench.json when present (or ``bench_path``).

    Sizes and parity come from the manifest, latency, load time and memory from the
    bench; the original's published figures are the labelled ``reference``.
    """
    folders = [Path(f) for f in folders]
    if not folders:
        raise ZooError("give a release folder written by `zoo export`")
    if bench_path is not None and len(folders) != 1:
        raise ZooError("--bench FILE goes with exactly one release folder")
    artifacts, failed, notes, models = [], [], [], {}
    bench_docs = []
    compat: list[dict] = []
    for folder in folders:
        if not folder.exists():
            raise ZooError(f"not found: {folder}")
        manifest = read_manifest(folder)  # its paths are confined to the folder
        if folder.is_file():
            folder = folder.parent
        top = manifest.model or {}
        held = (manifest.release or {}).get("withheld")
        for w in held if isinstance(held, list) else []:  # the flavours the release left out (zoo.core.withheld)
            if isinstance(w, dict) and all(isinstance(w.get(k), str) for k in ("model", "target", "precision", "reason", "instead")):
                notes.append(f"{folder.name}: {w['model']} {w['target']}/{w['precision']} withheld from the default matrix "
                             f"(measured to fail its tier: {w['reason']}; use {w['instead']})")
        bpath = Path(bench_path) if bench_path is not None else folder / BENCH_FILE
        bench = read_bench(bpath) if bpath.is_file() or bench_path is not None else None
        if bench is None:
            notes.append(f"{folder.name}: no {BENCH_FILE} (run `zoo bench {folder.name}`): sizes and parity only")
        else:
            bench_docs.append((folder, bpath, bench))
        if (folder / COMPAT_FILE).is_file():  # `zoo compat`'s result: shown, never trusted blindly
            doc, problem = read_compat(folder / COMPAT_FILE)
            current = {a.primary: (a.file(a.primary).sha256 if a.file(a.primary) else None) for a in manifest.artifacts}
            compat.append({"folder": str(folder), "file": str(folder / COMPAT_FILE), "doc": doc, "problem": problem,
                           "current": current})
        by_key: dict[tuple, list[dict]] = {}
        by_primary: dict[str, list[dict]] = {}
        for r in (bench or {}).get("results", []):
            by_key.setdefault((r.get("model"), r.get("target"), r.get("precision"), r.get("head")), []).append(r)
            if isinstance(r.get("primary"), str):
                by_primary.setdefault(r["primary"], []).append(r)
        used = set()
        for a in manifest.artifacts:
            model = a.model or a.meta.get("model_id") or top.get("id", "?")
            if model not in models:
                info = manifest.models.get(model) or top
                models[model] = {"id": model, "arch": a.meta.get("arch", info.get("arch")),
                                 "input_size": a.meta.get("input_size", info.get("input_size")),
                                 "macs": None, "params": None, "_meta": a.meta}
            files = model_files(a)
            size = sum(f.bytes for f in files)
            sha = a.file(a.primary).sha256
            k = (model, a.target, a.precision, a.head)
            # a row names its file (a dynamic artifact and its fixed twin share the other keys); older rows by key
            mine = by_primary.get(a.primary) or [r for r in by_key.get(k, []) if "primary" not in r]
            rows = sorted(mine, key=lambda r: r.get("threads", 0))
            used.add(k)
            for r in rows:  # the bench already counted them: no need to build the PyTorch model
                if r.get("macs") and models[model]["macs"] is None:
                    models[model]["macs"], models[model]["params"] = r["macs"], r.get("params")
            stale = any(r.get("sha256") and r["sha256"] != sha for r in rows)
            if stale:
                notes.append(f"{folder.name}: bench results of {model} {a.target}/{a.precision}/{a.head} are stale "
                             f"(the file changed since `zoo bench`): re-run `zoo bench {folder.name}`")
            artifacts.append({
                "folder": str(folder), "model": model, "target": a.target, "precision": a.precision, "head": a.head,
                "dynamic": a.dynamic, "min_runtime": a.min_runtime, "label": a.key.label(),
                "primary": a.primary, "files": [f.path for f in files], "sha256": sha,
                "file_entries": [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for f in a.files],
                "input_size": a.meta.get("input_size"),
                "size_bytes": size, "size_mib": round(size / MIB, 3),
                "parity": _parity_summary(a.parity),
                "bench": rows, "stale": stale,
            })
        for f in manifest.failed:
            row = {"folder": str(folder), **f.to_dict()}
            row["model"] = f.model or top.get("id", "?")
            failed.append(row)
        for k in by_key:
            if k not in used:
                notes.append(f"{folder.name}: {BENCH_FILE} has results for {' '.join(map(str, k))}, "
                             "which the manifest no longer lists (ignored)")
    for m in models.values():
        meta = m.pop("_meta")
        if m["macs"] is None and meta:
            cost = cost_for_meta(meta)
            m["macs"], m["params"] = cost["macs"], cost["params"]
    machine = settings = timestamp = None
    if bench_docs:
        first = bench_docs[0][2]
        machine, settings, timestamp = first.get("machine"), first.get("settings"), first.get("timestamp")
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
        "reference": published(),
        "compat": compat,
        "notes": notes,
    }
