#!/usr/bin/env bash
# Lay out the shared test material at $1 (default ../shared) on a machine that lacks it:
# the four public checkpoints (sha256-verified by `zoo`) under upstream/checkpoints.
# The reference files, photos and WIDER ground truth are not public downloads here: tests that
# need them read ZOO_SHARED; provide that folder (e.g. from a cache) in CI.
set -euo pipefail
dest="${1:-../shared}"
[ -d "$dest/upstream/checkpoints" ] && exit 0
mkdir -p "$dest/upstream/checkpoints"
base="https://github.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/raw/dffdddda9794a50607cba8f318507a28c1c27cab/models/pretrained"
for f in version-RFB-320.pth version-RFB-640.pth version-slim-320.pth version-slim-640.pth; do
  curl -fsSL -o "$dest/upstream/checkpoints/$f" "$base/$f"
done
