#!/usr/bin/env bash
# strace, for the tests' OS-level network audit (tests/osaudit.py: every process of every `zoo` command
# the suite runs, native code included, under `strace -f`). Debian's package; installed only when
# missing, quietly and non-interactively.
set -euo pipefail
command -v strace >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends strace >/dev/null
command -v strace >/dev/null 2>&1 || { echo "error: strace did not install" >&2; exit 1; }
