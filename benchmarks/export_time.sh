#!/usr/bin/env bash
# Export time, cold: the commands of the export-speed issue, each in new processes with an empty
# ZOO_CACHE_DIR (checkpoints from ZOO_CHECKPOINT_DIR, parity photos from ZOO_IMAGES_DIR, as offline
# machines have them), each printed with its wall time and its --profile table.
#
#   bash benchmarks/export_time.sh [ZOO] [--release]
#
# ZOO: the command to run (default: .venv/bin/zoo). --release also times the full default
# `zoo release` (4 models, every target, fp32/fp16/int8) and its resume. Not a test: figures
# depend on the machine (2 cores here) and on what else runs on it.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=".venv/bin/zoo"
RELEASE=""
for a in "$@"; do
    if [ "$a" = "--release" ]; then RELEASE="--release"; else ZOO="$a"; fi
done
SHARED="${ZOO_SHARED:-../shared}"
export ZOO_CHECKPOINT_DIR="${ZOO_CHECKPOINT_DIR:-$SHARED/upstream/checkpoints}"
export ZOO_IMAGES_DIR="${ZOO_IMAGES_DIR:-$SHARED/images}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

secs() {  # nanosecond stamps -> seconds with one decimal
    local ms=$(( ($2 - $1) / 1000000 ))
    printf '%d.%d' $((ms / 1000)) $(((ms % 1000) / 100))
}

run() {  # label, then the zoo arguments (--out and --profile are added)
    local label="$1"; shift
    local out="$work/out-$RANDOM"
    export ZOO_CACHE_DIR="$work/cache-$RANDOM"  # cold: nothing computed before
    local t0 t1
    t0=$(date +%s%N)
    "$ZOO" "$@" --out "$out" --profile > "$work/log" 2>&1 || { echo "FAILED: zoo $*"; tail -5 "$work/log"; }
    t1=$(date +%s%N)
    printf '\n## %s: %s s\n`zoo %s`\n\n' "$label" "$(secs "$t0" "$t1")" "$*"
    sed -n '/^job /,/^timings:/p' "$work/log"
}

run "onnx" export --model rfb-320 --to onnx
run "mnn,ncnn,tflite" export --model rfb-320 --to mnn,ncnn,tflite
run "five targets" export --model rfb-320 --to onnx,mnn,ncnn,tflite,caffe
run "five targets, three precisions" export --model rfb-320 --to onnx,mnn,ncnn,tflite,caffe --precision fp32,fp16,int8
if [ "$RELEASE" = "--release" ]; then
    export ZOO_CACHE_DIR="$work/cache-release"
    out="$work/release"
    t0=$(date +%s%N)
    "$ZOO" release --out "$out" --profile > "$work/log" 2>&1 || { echo "FAILED: zoo release"; tail -5 "$work/log"; }
    t1=$(date +%s%N)
    printf '\n## full default release: %s s\n\n' "$(secs "$t0" "$t1")"
    sed -n '/^job /,/^timings:/p' "$work/log" | tail -8
    t0=$(date +%s%N)
    "$ZOO" release --out "$out" > /dev/null 2>&1
    t1=$(date +%s%N)
    printf '\n## resume of that release (nothing changed): %s s\n' "$(secs "$t0" "$t1")"
fi
