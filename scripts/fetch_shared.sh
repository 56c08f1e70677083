#!/usr/bin/env bash
# Lay out the shared test material at $1 (default: $ZOO_SHARED, else ../shared): every file of the
# pinned list zoo/core/data/test_material.toml (checkpoints, reference files, photos, WIDER FACE
# ground truth), fetched from the original repository at the pinned commit (or $ZOO_UPSTREAM_URL),
# sha256-verified and written atomically. A no-op, with no request made, when all is present.
# Needs only a Python >= 3.11 (standard library): the project's .venv if there is one, else python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
args=(fetch)
[ -n "${1:-}" ] && args+=("$1")  # "" means the default, as no argument does
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m zoo.core.upstream "${args[@]}"
