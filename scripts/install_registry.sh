#!/usr/bin/env bash
# The OCI registry that the publish/pull tests start on 127.0.0.1 (tests/pipeline/oci_registry.py):
# Debian's docker-registry package, the CNCF distribution registry. Installed only when missing,
# quietly and non-interactively; the package's own service is never used (a test starts its own).
set -euo pipefail
command -v docker-registry >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
command -v docker-registry >/dev/null 2>&1 || { echo "error: docker-registry did not install" >&2; exit 1; }
