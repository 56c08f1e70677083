#!/usr/bin/env bash
# The browser the report-page tests render the HTML report in (tests/pipeline/test_report_page.py):
# Debian's chromium package, headless, driven over the DevTools protocol on a pipe (tests/browser.py).
# Installed only when missing, quietly and non-interactively, with the DejaVu fonts the page names first.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q DejaVuSans && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fontconfig >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "error: chromium did not install" >&2; exit 1; }
