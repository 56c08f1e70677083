#!/usr/bin/env bash
# The ncnn C++ library (static libncnn.a + headers) that tests/clients/test_ncnn_demo.py compiles the
# original's ncnn demo (upstream/clients/ncnn/src) against, unchanged.
#
#   bash scripts/build_ncnn_cpp.sh [DEST]      # default: $ZOO_NCNN_CPP_DIR, else ../.zoo-ncnn-cpp
#
# Neither Debian (no ncnn package in bookworm) nor the ncnn wheels (a Python module, no headers, no exported
# C++ symbols) offer an ncnn C++ library, so it is built from ncnn's source distribution on PyPI, at the
# version of the toolchain lock, fetched by pip and checked against the sha256 below. That sdist's
# setup.py stamps the day it runs into its version (1.0.YYYYMMDD), so pip, which checks the version of
# what it fetched, would refuse it on any other day: pip runs with a sitecustomize that gives the
# sdist's setup.py the release's date. Only pip's download runs the sdist's code; the build is cmake's.
#
# The library holds what the demo and our files use: the CPU layers of the UltraFace graphs (fp32, fp16
# storage and int8; Interp, which ncnn::resize_bilinear runs), no Vulkan, SSE2 code only (one code path: a ~4 minute build on 2 cores), and ncnn's
# SimpleOCV (its minimal cv::Mat / imread / rectangle / imshow), which the demo's main.cpp is compiled
# against in place of OpenCV's C++ library. Built into a temporary folder and renamed into place when
# complete; a folder already built for the same version and options is kept (no network then).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-${ZOO_NCNN_CPP_DIR:-$(cd "$ROOT/.." && pwd)/.zoo-ncnn-cpp}}"
PY="${ZOO_PYTHON:-$ROOT/.venv/bin/python}"
VERSION="1.0.20261020"
SHA256="ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200"
LAYERS="Input Convolution ConvolutionDepthWise ReLU Split Concat Reshape Permute Softmax BinaryOp Eltwise
Pooling Crop Slice UnaryOp Exp MemoryData Sigmoid Clip Padding Flatten InnerProduct Packing Cast Quantize Interp
Dequantize Requantize Noop Dropout Gemm"
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
mkdir -p "$WORK/shim" "$WORK/dl"
cat > "$WORK/shim/sitecustomize.py" <<'EOF'
# the ncnn sdist's setup.py versions itself with time.strftime("%Y%m%d"): give it the release's date
import os
import time

_day, _strftime = os.environ["ZOO_SDIST_DAY"], time.strftime
time.strftime = lambda fmt, *t: _day if fmt == "%Y%m%d" else _strftime(fmt, *t)
EOF
ZOO_SDIST_DAY="${VERSION##*.}" PYTHONPATH="$WORK/shim" "$PY" -m pip download -q --no-deps --no-binary :all: \
  --no-build-isolation "ncnn==$VERSION" -d "$WORK/dl" >/dev/null
SDIST="$WORK/dl/ncnn-$VERSION.tar.gz"
echo "$SHA256  $SDIST" | sha256sum -c --quiet - || { echo "error: ncnn-$VERSION.tar.gz: sha256 mismatch" >&2; exit 1; }
tar -xzf "$SDIST" -C "$WORK"

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
echo "$KEY" > "$WORK/install/ready"
rm -rf "$DEST"
mv "$WORK/install" "$DEST"
echo "ncnn C++ $VERSION: $DEST"
