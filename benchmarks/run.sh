#!/usr/bin/env bash
# Regenerate the release tables: export each model to every available target and
# precision, benchmark every artifact in its own runtime and process, and write the
# report (Markdown, CSV, JSON, PNG).
#
#   bash benchmarks/run.sh                      # rfb-320 and slim-320, all available targets
#   MODELS=rfb-320 THREADS=1 RUNS=20 bash benchmarks/run.sh
#
# Settings (environment): MODELS, TARGETS (default: every target `zoo list` reports
# available), PRECISIONS, THREADS, WARMUP, RUNS, ROUNDS, OUT, IMAGES (parity
# photos; default: the shared photos if present, else the pinned ones; int8 is calibrated on the
# default calibration material, never on the parity photos),
# ZOO (the zoo command; default: `python -m zoo` of this checkout).
# Exit status: 0 when everything exported, passed parity and was measured; 2 otherwise
# (the report is still written, and lists what failed).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
if [[ -z "${ZOO:-}" ]]; then
  ZOO_CMD=("$PY" -m zoo)
else
  read -r -a ZOO_CMD <<<"$ZOO"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

MODELS="${MODELS:-rfb-320,slim-320}"
PRECISIONS="${PRECISIONS:-fp32,fp16,int8}"
THREADS="${THREADS:-1,2}"
WARMUP="${WARMUP:-10}"
RUNS="${RUNS:-50}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-$ROOT/benchmarks/out}"
SHARED_IMAGES="${ZOO_SHARED:-$ROOT/../shared}/images"
if [[ -z "${IMAGES:-}" && -d "$SHARED_IMAGES" ]]; then IMAGES="$SHARED_IMAGES"; fi
if [[ -z "${ZOO_CHECKPOINT_DIR:-}" && -d "${ZOO_SHARED:-$ROOT/../shared}/upstream/checkpoints" ]]; then
  export ZOO_CHECKPOINT_DIR="${ZOO_SHARED:-$ROOT/../shared}/upstream/checkpoints"
fi

if [[ -z "${TARGETS:-}" ]]; then
  TARGETS="$("${ZOO_CMD[@]}" list --json | "$PY" -c 'import json,sys; print(",".join(t["name"] for t in json.load(sys.stdin)["targets"] if t["available"]))')" || exit 1
fi
echo "models: $MODELS  targets: $TARGETS  precisions: $PRECISIONS  threads: $THREADS  out: $OUT" >&2

status=0
img_args=()
if [[ -n "${IMAGES:-}" ]]; then img_args=(--images "$IMAGES"); fi
folders=()
IFS=',' read -r -a model_list <<<"$MODELS"
t0=$SECONDS
for m in "${model_list[@]}"; do
  dir="$OUT/$m"
  echo "== export $m -> $dir" >&2
  "${ZOO_CMD[@]}" export --model "$m" --to "$TARGETS" --precision "$PRECISIONS" --out "$dir" "${img_args[@]}"
  rc=$?
  if [[ $rc -eq 1 ]]; then exit 1; fi   # a user error: nothing to measure
  if [[ $rc -ne 0 ]]; then status=2; fi
  folders+=("$dir")
done
echo "== export took $((SECONDS - t0)) s" >&2

t0=$SECONDS
echo "== bench ${folders[*]}" >&2
"${ZOO_CMD[@]}" bench "${folders[@]}" --threads "$THREADS" --warmup "$WARMUP" --runs "$RUNS" --rounds "$ROUNDS" \
  --out "$OUT/bench.json"
rc=$?
if [[ $rc -eq 1 ]]; then exit 1; fi
if [[ $rc -ne 0 ]]; then status=2; fi
echo "== bench took $((SECONDS - t0)) s" >&2

for fmt in md csv json png; do
  "${ZOO_CMD[@]}" report "${folders[@]}" --format "$fmt" --out "$OUT/report.$fmt" || exit 1
done
echo "== report: $OUT/report.md (and .csv, .json, .png)" >&2
exit $status
