#!/usr/bin/env bash
# The package as users get it: build the sdist and, from it, the wheel; validate their metadata; check that
# the wheel's only top-level package is `zoo`; install the wheel (not editable) with the toolchain lock into
# a new virtual environment beside the clone; and from there, outside the repository, run `zoo list` and a
# real `zoo export --model rfb-320 --to onnx,ncnn`. Needs this checkout's .venv (scripts/install.sh) for the
# build tools. ZOO_WHEEL_VENV: where the environment goes (default ../.zoo-wheel-venv, made anew each run).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="$repo/.venv/bin/python"
lock="$repo/zoo/core/data/constraints.txt"
venv="${ZOO_WHEEL_VENV:-$(cd "$repo/.." && pwd)/.zoo-wheel-venv}"
die() { echo "error: $*" >&2; exit 1; }
[ -x "$py" ] || die "no project python at $py: run scripts/install.sh first"
work="$(mktemp -d "${TMPDIR:-/tmp}/zoo-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# 1. the tracked files only (what a clone holds), built outside the checkout so it stays clean
mkdir -p "$work/src"
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$work/src" 2>/dev/null || true)
"$py" -m build --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; die "the sdist/wheel build failed"; }
"$repo/.venv/bin/twine" check --strict "$work"/dist/*
wheel="$(ls "$work"/dist/*.whl)"
tops="$("$py" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))})))
PY
)"
echo "wheel $(basename "$wheel"): top-level names: $tops"
[ "$tops" = "zoo" ] || die "the wheel installs top-level names '$tops', not only 'zoo'"

# 2. a new environment with the lock: torch first (CPU build), then the wheel with every runtime
rm -rf "$venv"
start=$(date +%s)
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet -c "$lock" pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0" ${ZOO_TORCH_INDEX:+--index-url "$ZOO_TORCH_INDEX"}
"$venv/bin/python" -m pip install --quiet -c "$lock" "$wheel[all]"
echo "installed the wheel with the lock in $(( $(date +%s) - start )) s into $venv"

# 3. run it as a user does: from a folder that is not the repository, nothing on PYTHONPATH
cd "$work"
unset PYTHONPATH
"$venv/bin/python" - "$venv" <<'PY'
import sys
from pathlib import Path
import zoo
where = Path(zoo.__file__).resolve()
assert where.is_relative_to(Path(sys.argv[1]).resolve()), f"zoo imported from {where}, not the wheel"
heavy = sorted(m for m in ("torch", "numpy", "cv2", "zoo.pipeline", "zoo.cli") if m in sys.modules)
assert not heavy, f"import zoo imported {heavy}"
import zoo.exporters, zoo.validation.parity, zoo.checkpoints.loader  # noqa: E401 - the three portions, installed
print(f"import zoo: {where.parent}, version {zoo.__version__}, nothing heavy imported")
PY
"$venv/bin/zoo" list
"$venv/bin/zoo" export --model rfb-320 --to onnx,ncnn --out "$work/export"
# the web module ships from the wheel's package data beside the ONNX files
cmp "$work/export/web/ultraface.js" "$repo/zoo/web/ultraface.js" || die "the export holds no web/ultraface.js of the wheel's"
# issue 32's "done when", as a user of the Python API runs it from the wheel: export to ONNX and ncnn, every
# artifact PASSes, and zoo.load(...).detect gives the detections `zoo detect --artifact` prints (each artifact)
photo="$("$venv/bin/python" -c 'import zoo.core.images as i; print(i.builtin_images()[0])')"
"$venv/bin/python" - "$work/api" "$photo" > "$work/api.txt" <<'PY' || die "the Python API from the wheel failed"
import sys
import zoo
r = zoo.export("rfb-320", to=["onnx", "ncnn"], precision=["fp32"], out=sys.argv[1])
assert all(a.parity.passed for a in r.artifacts) and len(r.artifacts) == 2, [(a.key, a.parity.passed) for a in r.artifacts]
for a in r.artifacts:
    with zoo.load(a.path) as det:
        dets = det.detect(sys.argv[2])
    assert dets, "no face found on the built-in photo"
    print(a.path, ";".join(f"{d.label} {d.score} " + " ".join(map(str, d.box)) for d in dets), sep="\t")
PY
while IFS="$(printf '\t')" read -r path got; do
  # the same faces, labels, scores and boxes (the CLI's JSON rounds: boxes within 0.01 px, scores 1e-5)
  "$venv/bin/zoo" detect "$photo" --artifact "$path" --json | "$venv/bin/python" -c "$(cat <<'PY'
import json, sys
want = json.load(sys.stdin)["results"][0]["detections"]
got = [(g.split()[0], float(g.split()[1]), [float(v) for v in g.split()[2:]]) for g in sys.argv[1].split(";")]
assert len(got) == len(want), (got, want)
for (label, score, box), w in zip(got, want):
    assert label == w["label"] and abs(score - w["score"]) <= 1e-5, (label, score, w)
    assert all(abs(a - b) <= 0.01 for a, b in zip(box, w["box"])), (box, w["box"])
PY
)" "$got" || die "zoo.load($path).detect differs from zoo detect --artifact"
  echo "api: zoo.export + zoo.load($(basename "$path")).detect = zoo detect --artifact"
done < "$work/api.txt"
[ "$(wc -l < "$work/api.txt")" -eq 2 ] || die "the API run gave $(wc -l < "$work/api.txt") artifacts, not 2"
echo "wheel: OK"
