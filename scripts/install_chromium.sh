#!/usr/bin/env bash
# Headless Chromium for the browser test (tests/web/test_browser.py): Debian's chromium package. Installed only
# when missing, quietly and non-interactively; the test starts it itself (headless, no sandbox, every background
# service off, a new empty profile) against a page on 127.0.0.1.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "error: chromium did not install" >&2; exit 1; }
