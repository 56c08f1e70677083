#!/usr/bin/env bash
# Install ultraface-zoo with every runtime into ./.venv (CPU torch first, so pip never swaps it for a CUDA build),
# every package at the version of the toolchain lock, zoo/core/data/constraints.txt (docs/install.md: "The toolchain lock").
# ZOO_TORCH_INDEX: the package index torch is taken from (e.g. https://download.pytorch.org/whl/cpu, as in
# .github/workflows/ci.yml); unset, pip's own configuration decides (on this project's machine, a local wheel folder).
# ZOO_EXTRAS: the extras to install (default `test,mutation,docs`: every runtime, the test tools, the mutation run,
# the strict docs build and mypy; `arm64` on an aarch64 machine, where tensorflow-cpu has no wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=zoo/core/data/constraints.txt
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet -c "$LOCK" pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" ${ZOO_TORCH_INDEX:+--index-url "$ZOO_TORCH_INDEX"}
.venv/bin/python -m pip install --quiet -c "$LOCK" -e ".[${ZOO_EXTRAS:-test,mutation,docs}]"
# The web runtimes (tfjs-wasm, tfjs-cpu, ort-web; zoo/core/node.py): the npm packages pinned by package-lock.json,
# installed into ./node_modules by `npm ci` (install scripts off), when Node.js 18+ and npm are on the machine;
# without them those runtimes are reported missing (`zoo list`) and their tests skip. Skipped when
# node_modules already holds this lock (a stamp of its sha256).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
   && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  stamp=node_modules/.zoo-lock.sha256
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
else
  echo "note: no Node.js 18+ with npm here: the web runtimes (tfjs-wasm, tfjs-cpu, ort-web) will be reported missing" >&2
fi
