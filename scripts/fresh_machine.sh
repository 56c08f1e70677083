#!/usr/bin/env bash
# Prove the fresh-machine path: a clone of this checkout's HEAD with no ../shared beside it fetches the
# complete test material from a loopback mirror of the original repository, verified, and then the unit
# tests and the smoke tests pass on what was fetched.
#
# The mirror is $ZOO_SHARED (default ../shared) laid out as the original repository (each pinned file at
# its path in the repository), served by `python3 -m http.server` on 127.0.0.1 and reached through
# ZOO_UPSTREAM_URL. The fetch runs with a bare python3 (the clone has no .venv); the tests run with the
# project's interpreter, $ZOO_PYTHON (default: this checkout's .venv/bin/python). Nothing is installed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="${ZOO_SHARED:-$(cd "$repo/.." && pwd)/shared}"
zpy="${ZOO_PYTHON:-$repo/.venv/bin/python}"
die() { echo "error: $*" >&2; exit 1; }
[ -x "$zpy" ] || die "no project python at $zpy: run scripts/install.sh or set ZOO_PYTHON"
[ -d "$src" ] || die "no shared material at $src to build the mirror from: set ZOO_SHARED"
command -v python3 >/dev/null || die "python3 not found"

work="$(mktemp -d "${TMPDIR:-/tmp}/zoo-fresh.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. a fresh clone of HEAD: nothing beside it
head="$(git -C "$repo" rev-parse HEAD)"
clone="$work/machine/ultraface-zoo"
git clone --quiet --no-checkout "$repo" "$clone"
git -C "$clone" fetch --quiet "$repo" HEAD  # HEAD may be detached (a CI checkout): not among the cloned branches
git -C "$clone" checkout --quiet --detach "$head"
shared="$work/machine/shared"
[ ! -e "$shared" ] || die "$shared exists before the fetch"
echo "fresh clone of $head at $clone (no ../shared)"

# 2. the mirror: ../shared laid out as the original repository, per the clone's pinned list
mirror="$work/mirror"
PYTHONPATH="$clone" python3 - "$src" "$mirror" <<'EOF'
import shutil, sys
from pathlib import Path
from zoo.core.upstream import load_list
src, mirror = Path(sys.argv[1]), Path(sys.argv[2])
for f in load_list():
    (mirror / f.remote).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / f.local, mirror / f.remote)
EOF
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory "$mirror" "$port" >/dev/null 2>"$work/server.log" &
server_pid=$!
url="http://127.0.0.1:$port"
python3 - "$url/LICENSE" <<'EOF' || die "the mirror did not start on $url"
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
requests() { grep -c '"GET ' "$work/server.log" || true; }
before="$(requests)"

# 3. the fetch into the empty ../shared, then its check, then a second run that must be a no-op
start="$(date +%s.%N)"
ZOO_UPSTREAM_URL="$url" bash "$clone/scripts/fetch_shared.sh" "$shared" 2>/dev/null
end="$(date +%s.%N)"
fetched=$(( $(requests) - before ))
PYTHONPATH="$clone" python3 -m zoo.core.upstream fetch "$shared" --check
count="$(find "$shared" -type f | wc -l)"
bytes="$(find "$shared" -type f -printf '%s\n' | awk '{s += $1} END {print s}')"
python3 -c 'import sys; print(f"material: {sys.argv[1]} files, {int(sys.argv[2])} bytes ({int(sys.argv[2]) / 2**20:.1f} MiB); "
            f"fetched from the loopback mirror in {float(sys.argv[4]) - float(sys.argv[3]):.2f} s ({sys.argv[5]} requests)")' \
  "$count" "$bytes" "$start" "$end" "$fetched"
before="$(requests)"
ZOO_UPSTREAM_URL="$url" bash "$clone/scripts/fetch_shared.sh" "$shared"
[ "$(requests)" = "$before" ] || die "the fetch into a complete folder made $(( $(requests) - before )) requests"
echo "no-op on the complete folder: 0 requests"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""  # tests never download

# 4. the unit tier and the smoke tests of the rest, on the fetched material only
cd "$clone"
export ZOO_SHARED="$shared" PYTHONPATH="$clone"
unset ZOO_CHECKPOINT_DIR ZOO_UPSTREAM_URL ZOO_IMAGES_DIR
"$zpy" -m pytest -q -p no:cacheprovider tests/unit
# without Node.js (and with no npm packages in the clone) the web runtimes are reported missing, not failing
ZOO_NODE="$work/no-node" "$zpy" -m zoo list --json | "$zpy" -c '
import json, sys
t = {x["name"]: x for x in json.load(sys.stdin)["targets"]}
web = {"tfjs-wasm": t["tfjs"], "tfjs-cpu": t["tfjs"], "ort-web": t["onnx"]}
bad = [r for r, x in web.items() if x["runtime_status"][r]["available"] or not x["runtime_status"][r]["install"]]
assert not bad and t["onnx"]["available"] and not t["tfjs"]["available"], bad
print("without Node.js: tfjs-wasm, tfjs-cpu, ort-web reported missing (" + t["tfjs"]["missing"][0] + ")")'
"$zpy" -m pytest -q -p no:cacheprovider -m smoke tests
echo "fresh machine: OK"
