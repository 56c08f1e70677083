"""int8 on photos the calibration never saw: the held-out table of issue 13.

    python benchmarks/int8_heldout.py [--models rfb-320,slim-320] [--targets onnx,mnn,ncnn,tflite]
                                      [--images DIR] [--out DIR] [--default]

``--images`` (default: $ZOO_IMAGES_DIR, else $ZOO_SHARED/images) is split in two fixed halves,
balanced by face count (SPLIT below); each half calibrates the int8 artifacts gated on the other
half ("A->B" and "B->A"). ``--default`` adds a row per model with the default calibration (the
built-in photos and mosaics) gated on the whole folder. Prints a markdown table of faces kept /
reference faces and extra detections per int8 artifact, against PyTorch at IoU >= 0.5.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: two halves of the 16 pinned photos, ~145 faces each for every model of the family
SPLIT = {
    "A": ["10.jpg", "11.jpg", "12.jpg", "13.jpg", "15.jpg", "17.jpg", "18.jpg", "5.jpg"],
    "B": ["1.jpg", "16.jpg", "19.jpg", "2.jpg", "3.jpg", "6.jpg", "8.jpg", "9.jpg"],
}


def half(src: Path, names: list[str], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dest / n).symlink_to((src / n).resolve())
    return dest


def export(model: str, targets: str, calib: Path | None, images: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "zoo", "export", "-m", model, "--to", targets, "--precision", "int8",
           "--images", str(images), "--out", str(out), "--json", *extra]
    if calib is not None:
        cmd += ["--calib", str(calib)]
    if not (out / "manifest.json").is_file():  # a folder from an earlier run is reused
        cp = subprocess.run(cmd, capture_output=True, text=True)
        if not (out / "manifest.json").is_file():
            raise SystemExit(f"{' '.join(cmd)} wrote no manifest: {cp.stderr[-2000:]}")
    return json.loads((out / "manifest.json").read_text())


def recheck(out: Path, images: Path) -> dict:
    """Parity of the int8 artifacts already in ``out`` re-run by this checkout's `zoo check` on
    ``images``: exports made by an older version counted with today's rules."""
    cmd = [sys.executable, "-m", "zoo", "check", str(out), "--images", str(images), "--min-evidence", "1", "--json"]
    cp = subprocess.run(cmd, capture_output=True, text=True)
    try:
        res = json.loads(cp.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"{' '.join(cmd)} failed: {cp.stderr[-2000:]}") from None
    m = json.loads((out / "manifest.json").read_text())
    by_label = {r["artifact"]: r for r in res["results"]}
    for a in m["artifacts"]:
        r = by_label.get(f"{a['target']}/{a['precision']}/{a['head']}")
        a["parity"] = (r or {}).get("parity") or {"passed": False, "failures": (r or {}).get("failures", ["not checked"])}
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rfb-320,slim-320")
    ap.add_argument("--targets", default="onnx,mnn,ncnn,tflite")
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the exports here (default: a temporary folder)")
    ap.add_argument("--default", action="store_true", help="also the default calibration, gated on the whole folder")
    ap.add_argument("--splits", default="A,B", help="which halves calibrate (A: gate on B; B: gate on A; \"\": none, with --default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--recheck", action="store_true",
                    help="export nothing: re-run parity of the int8 artifacts already in --out with this checkout's `zoo check`")
    ap.add_argument("zoo_args", nargs="*", help="more `zoo export` options, after --")
    a = ap.parse_args()
    images = a.images or Path(os.environ.get("ZOO_IMAGES_DIR") or Path(os.environ.get("ZOO_SHARED", "../shared")) / "images")
    work = Path(a.out or tempfile.mkdtemp(prefix="zoo-heldout-"))
    halves = {k: work / "images" / k if (work / "images" / k).exists() else half(images, v, work / "images" / k)
              for k, v in SPLIT.items()}
    rows = []
    for model in a.models.split(","):
        runs = [(f"{c}->{'B' if c == 'A' else 'A'}", halves[c], halves["B" if c == "A" else "A"]) for c in a.splits.split(",") if c]
        if a.default:
            runs.append(("default->all", None, images))
        for name, calib, gate in runs:
            folder = work / f"{model}-{name.replace('->', '-')}"
            if a.recheck:
                if not (folder / "manifest.json").is_file():
                    continue
                m = recheck(folder, gate)
            else:
                m = export(model, a.targets, calib, gate, folder, a.zoo_args)
            for art in m["artifacts"]:
                d = (art.get("parity") or {}).get("detections") or {}
                if not art["precision"].startswith("int8") or not d:
                    continue
                st = d.get("strict") or {}
                sh = ((art.get("parity") or {}).get("shift") or {}).get("pooled") or {}
                rows.append({"model": model, "split": name, "target": art["target"], "precision": art["precision"],
                             "matched": d["matched"], "reference": d["reference"], "extra": d["extra"],
                             "strict_matched": st.get("matched"), "strict_extra": st.get("extra"),
                             "shift": (f"{sh['matched']}/{sh['reference']}+{sh['extra']}, strict "
                                       f"{sh['strict']['matched']}/{sh['strict']['extra']}") if sh else "-",
                             "recall": d["matched"] / max(d["reference"], 1), "extra_rate": d["extra"] / max(d["reference"], 1),
                             "passed": art["parity"]["passed"], "bytes": sum(f["bytes"] for f in art["files"])})
            for f in m.get("failed", []):
                rows.append({"model": model, "split": name, "target": f["target"], "precision": f["precision"], "error": f["error"]})
            print(f"{model} {name}: done", file=sys.stderr, flush=True)
    print("| model | calib->gate | artifact | kept / faces | extra | strict kept / extra | shift gate (kept/faces+extra, strict) | PASS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['split']} | {r['target']} {r['precision']} | FAILED: {r['error'][:80]} | | | | |")
            continue
        print(f"| {r['model']} | {r['split']} | {r['target']} {r['precision']} | {r['matched']}/{r['reference']} "
              f"({100 * r['recall']:.1f}%) | {r['extra']} ({100 * r['extra_rate']:.1f}%) | "
              f"{r['strict_matched']} / {r['strict_extra']} | {r['shift']} | {'yes' if r['passed'] else 'NO'} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
