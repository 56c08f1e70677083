#!/usr/bin/env bash
# Install ultraface-zoo with every runtime into ./.venv (CPU torch first, so pip never swaps it for a CUDA build),
# every package at the version of the toolchain lock, zoo/core/data/constraints.txt (README: "The toolchain lock").
# ZOO_TORCH_INDEX: the package index torch is taken from (e.g. https://download.pytorch.org/whl/cpu, as in
# .github/workflows/ci.yml); unset, pip's own configuration decides (on this project's machine, a local wheel folder).
# ZOO_EXTRAS: the extras to install (default `test`: every runtime and the test tools; `arm64` on an aarch64
# machine, where tensorflow-cpu has no wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=zoo/core/data/constraints.txt
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet -c "$LOCK" pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" ${ZOO_TORCH_INDEX:+--index-url "$ZOO_TORCH_INDEX"}
.venv/bin/python -m pip install --quiet -c "$LOCK" -e ".[${ZOO_EXTRAS:-test,mutation}]"
