#!/usr/bin/env bash
# The ncnn C++ library (static libncnn.a + headers) that tests/clients/test_ncnn_demo.py compiles the
# original's ncnn demo (upstream/clients/ncnn/src) against, unchanged.
#
#   bash scripts/build_ncnn_cpp.sh [DEST]      # default: $ZOO_NCNN_CPP_DIR, else ../.zoo-ncnn-cpp
#
# Neither Debian (no ncnn package in bookworm) nor the ncnn wheels (a Python module, no headers, no exported
# C++ symbols) offer an ncnn C++ library, so it is built from ncnn's source distribution on PyPI, at the
# version of the toolchain lock. The sdist file itself is fetched from the registry (PyPI's JSON API gives
# its address and digest; no pip, so none of the sdist's own code runs: its setup.py stamps the day it runs
# into its version, which pip would then refuse) and checked against the sha256 pinned below before it is
# unpacked (ZOO_PYPI_JSON: a mirror's JSON API instead of https://pypi.org/pypi). The build is cmake's.
#
# The library holds only what our files and the demo need: the CPU layers of the UltraFace graphs (fp32,
# fp16 storage, int8) and of the demo's Mat calls (LAYERS, below), no Vulkan, SSE2 code only (one code
# path), and ncnn's SimpleOCV (its minimal cv::Mat / imread / rectangle / imshow), which the demo's main.cpp is
# compiled against in place of OpenCV's C++ library. It is built in a temporary folder beside DEST and
# renamed into place, with its "ready" marker (the key of the sdist's sha256, the layers and the options)
# already inside, only when complete: a half-built or interrupted build never looks ready. A folder
# already built with the same key is kept (no network, no build then).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-${ZOO_NCNN_CPP_DIR:-$(cd "$ROOT/.." && pwd)/.zoo-ncnn-cpp}}"
PY="${ZOO_PYTHON:-$ROOT/.venv/bin/python}"
VERSION="1.0.20261020"
SHA256="ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200"
# the layers of our ncnn graphs (raw and decoded heads: Input ... MemoryData), those ncnn runs inside them
# (Padding and Crop for borders, Packing, Cast for fp16 storage, Flatten, Quantize/Dequantize/Requantize for
# int8; Gemm, whose int8 kernels the x86 int8 Convolution links to) and the demo's Mat calls (Interp:
# resize_bilinear; Scale and Bias: substract_mean_normalize); the library lists them in DEST/layers.txt,
# which tests/clients/test_ncnn_demo.py holds each .param to
LAYERS="Input Convolution ConvolutionDepthWise ReLU Split Concat Reshape Permute Softmax BinaryOp UnaryOp Slice
MemoryData Padding Crop Packing Cast Flatten Quantize Dequantize Requantize Gemm Interp Scale Bias"
OPTIONS="-DCMAKE_BUILD_TYPE=Release -DNCNN_VULKAN=OFF -DNCNN_PYTHON=OFF -DNCNN_BUILD_TOOLS=OFF
-DNCNN_BUILD_EXAMPLES=OFF -DNCNN_BUILD_BENCHMARK=OFF -DNCNN_BUILD_TESTS=OFF -DNCNN_RUNTIME_CPU=OFF -DNCNN_AVX=OFF
-DNCNN_BF16=OFF -DNCNN_C_API=OFF -DNCNN_PIXEL_AFFINE=OFF -DNCNN_PIXEL_ROTATE=OFF -DNCNN_SIMPLEOCV=ON
-DNCNN_PIXEL_DRAWING=ON"

locked=$(grep -E '^ncnn==' "$ROOT/zoo/core/data/constraints.txt" | cut -d= -f3)
if [ "$locked" != "$VERSION" ]; then
  echo "error: the lock pins ncnn $locked, this script builds $VERSION: update VERSION and SHA256 in $0" >&2
  exit 1
fi
KEY=$(printf '%s\n%s\n%s\n' "$SHA256" "$LAYERS" "$OPTIONS" | sha256sum | cut -c1-16)
if [ -f "$DEST/ready" ] && [ "$(cat "$DEST/ready")" = "$KEY" ]; then
  echo "ncnn C++ $VERSION: $DEST (built)"
  exit 0
fi
for tool in cmake make c++; do
  command -v "$tool" >/dev/null 2>&1 && continue
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends cmake make g++ >/dev/null
  break
done

mkdir -p "$(dirname "$DEST")"
WORK=$(mktemp -d "$(dirname "$DEST")/.zoo-ncnn-cpp-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/dl"
SDIST="$WORK/dl/ncnn-$VERSION.tar.gz"
# the registry's record of the release (PyPI's JSON API, per version; a mirror without that endpoint: the
# project's record), then the file, written to a temporary name and kept only when its sha256 is the pinned one
"$PY" - "${ZOO_PYPI_JSON:-https://pypi.org/pypi}" ncnn "$VERSION" "$SHA256" "$SDIST" <<'EOF' || exit 1
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

base, name, version, sha256, dest = sys.argv[1:]
filename = os.path.basename(dest)


def get(url: str) -> bytes:
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404 or attempt == 2:
                raise
        except (urllib.error.URLError, OSError):
            if attempt == 2:
                raise
        time.sleep(5 * (attempt + 1))
    raise AssertionError("unreachable")


def files() -> tuple[str, list]:
    url = f"{base}/{name}/{version}/json"
    try:
        return url, json.loads(get(url))["urls"]
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    url = f"{base}/{name}/json"
    return url, json.loads(get(url))["releases"].get(version, [])


try:
    where, listed = files()
    found = [f for f in listed if f.get("packagetype") == "sdist" and f.get("filename") == filename]
    if not found:
        sys.exit(f"error: {where} lists no {filename}: is ncnn {version} still on the registry?")
    (entry,) = found
    if entry["digests"]["sha256"] != sha256:
        sys.exit(f"error: the registry's {filename} has sha256 {entry['digests']['sha256']}, not the pinned "
                 f"{sha256}: refusing it")
    data = get(urllib.parse.urljoin(where, entry["url"]))
except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
    sys.exit(f"error: fetching {filename} from {base} failed ({e}): check the network, or set ZOO_PYPI_JSON")
got = hashlib.sha256(data).hexdigest()
if got != sha256:
    sys.exit(f"error: {filename} as downloaded has sha256 {got}, not the pinned {sha256}: refusing it")
with open(dest + ".part", "wb") as f:
    f.write(data)
os.replace(dest + ".part", dest)
EOF
echo "$SHA256  $SDIST" | sha256sum -c --quiet - || { echo "error: ncnn-$VERSION.tar.gz: sha256 mismatch" >&2; exit 1; }
tar -xzf "$SDIST" -C "$WORK" --no-same-owner

off=""
for l in $(sed -n 's/^ *ncnn_add_layer(\([A-Za-z0-9_]*\).*/\1/p' "$WORK/ncnn-$VERSION/src/CMakeLists.txt"); do
  case " $(echo $LAYERS) " in *" $l "*) ;; *) off="$off -DWITH_LAYER_$(echo "$l" | tr 'A-Z' 'a-z')=OFF" ;; esac
done
mkdir -p "$WORK/build"
# shellcheck disable=SC2086
(cd "$WORK/build" && cmake "$WORK/ncnn-$VERSION" $OPTIONS $off -DCMAKE_INSTALL_PREFIX="$WORK/install" >cmake.log 2>&1 \
  && make -j"${ZOO_BUILD_JOBS:-2}" install >make.log 2>&1) || {
  echo "error: building ncnn $VERSION failed; the last lines:" >&2
  tail -n 20 "$WORK/build/make.log" "$WORK/build/cmake.log" 2>/dev/null >&2
  exit 1
}
# the library links (a Net pulls in every layer compiled in) and runs the demo's Mat calls, or it is not ready
cat > "$WORK/check.cpp" <<'EOF'
#include "net.h"
int main()
{
    ncnn::Net net;
    ncnn::Mat a(8, 6, 3), b;
    a.fill(2.f);
    ncnn::resize_bilinear(a, b, 4, 3);
    const float mean[3] = {1.f, 1.f, 1.f}, norm[3] = {0.5f, 0.5f, 0.5f};
    b.substract_mean_normalize(mean, norm);
    return b.w == 4 && b.h == 3 && b.c == 3 && b.channel(2)[11] == 0.5f ? 0 : 1;
}
EOF
c++ -O1 -fopenmp -I"$WORK/install/include/ncnn" "$WORK/check.cpp" "$WORK/install/lib/libncnn.a" -lpthread \
  -o "$WORK/check" 2>"$WORK/check.log" && "$WORK/check" || {
  echo "error: the ncnn $VERSION library built does not link or run (LAYERS in $0 lacks a layer?):" >&2
  tail -n 8 "$WORK/check.log" >&2
  exit 1
}
echo $LAYERS | tr ' ' '\n' > "$WORK/install/layers.txt"
echo "$KEY" > "$WORK/install/ready"
rm -rf "$DEST"
mv "$WORK/install" "$DEST"
echo "ncnn C++ $VERSION: $DEST"
