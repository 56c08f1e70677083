#!/usr/bin/env bash
# A long fuzz campaign over every file kind the tool reads (manifests, checkpoints, images, artifacts).
# CI runs the same property-based tests with a fixed seed and a small budget (about a minute);
# this runs them with a random seed and EXAMPLES times as many cases (default 50).
#   bash scripts/fuzz.sh [EXAMPLES]
# A failure prints hypothesis's minimal failing example and its seed (reproduce with ZOO_FUZZ_SEED=<seed>):
# turn it into a regression case under tests/ (an @example(...) on the property, or a plain test).
set -euo pipefail
cd "$(dirname "$0")/.."
export ZOO_FUZZ_EXAMPLES="${1:-50}"
export ZOO_FUZZ_SEED="${ZOO_FUZZ_SEED:-random}"
PY="${PYTHON:-.venv/bin/python}"
files=(tests/unit/test_manifest.py)
for f in tests/unit/test_hostile_*.py tests/targets/test_hostile_*.py tests/unit/test_upstream_fetch.py; do
  [ -f "$f" ] && files+=("$f")
done
echo "fuzz campaign: x${ZOO_FUZZ_EXAMPLES} examples, seed ${ZOO_FUZZ_SEED}: ${files[*]}"
exec "$PY" -m pytest -q -p no:cacheprovider --hypothesis-show-statistics "${files[@]}"
