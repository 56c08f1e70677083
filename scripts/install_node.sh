#!/usr/bin/env bash
# Node.js 18+ and npm, for the web runtimes (tfjs-wasm, tfjs-cpu, ort-web: zoo/core/node.py) and their tests:
# scripts/install.sh then installs the pinned npm packages (npm ci from package-lock.json). Debian's packages
# (bookworm: nodejs 18.20); installed only when no Node.js 18+ with npm is on the machine, quietly and
# non-interactively. Without Node.js zoo still works: the web runtimes are reported missing (`zoo list`).
set -euo pipefail
have() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'
}
have && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
have || { echo "error: Node.js 18+ with npm did not install" >&2; exit 1; }
