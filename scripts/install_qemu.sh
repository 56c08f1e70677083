#!/usr/bin/env bash
# qemu's user-mode emulator for `zoo compat --platform linux/arm64` (tests/pipeline/test_compat_arm64.py):
# Debian's/Ubuntu's qemu-user-static package, installed only when missing, quietly and non-interactively.
# The emulator is started explicitly by zoo (qemu-aarch64-static -cpu MODEL -L ROOT ...); nothing here
# registers it with binfmt_misc, and zoo never does (kernel-wide state).
set -euo pipefail
command -v qemu-aarch64-static >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
command -v qemu-aarch64-static >/dev/null 2>&1 || { echo "error: qemu-user-static did not install" >&2; exit 1; }
