"""Issue 35: the original's ncnn C++ demo (upstream/clients/ncnn/src: main.cpp, UltraFace.cpp, UltraFace.hpp),
compiled unchanged and run on our ncnn files (fp32, fp16, int8), finds the faces `zoo detect --artifact` finds
on the pinned photos. Its calls are the ones every app built on it makes: ex.input("input"),
ex.extract("scores"), ex.extract("boxes"), substract_mean_normalize(127, 1/128), from_pixels(BGR2RGB), its
own priors and decoding. On a file with pnnx's blob names (ours before issue 35) it finds nothing.

The demo is compiled against the ncnn C++ library that scripts/build_ncnn_cpp.sh builds from ncnn's PyPI
source distribution (`ZOO_NCNN_CPP_DIR`, default ../.zoo-ncnn-cpp beside the clone; .ci/run builds it),
with ncnn's SimpleOCV standing in for OpenCV's C++ library in main.cpp (ncnn_demo/opencv2/opencv.hpp),
and ncnn_demo/capture.cpp wrapping cv::rectangle (-Wl,--wrap) to print each box it draws.

main.cpp fixes the network size at 320x240 and reads images with SimpleOCV's imread (stb_image): the
photos are given to it, and to `zoo detect`, as lossless PNG copies of the pinned JPEGs, so both read the
same pixels. What may differ is the demo's own: ncnn's resize_bilinear instead of OpenCV's resize, its
blending NMS (boxes averaged over each overlapping group, weighted by exp(score)) instead of hard NMS,
no 200-candidate cut, and pixel coordinates truncated to int. So the same faces means: one to one, each
pair at IoU >= MIN_IOU.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, ROOT, SHARED, zoo

DEMO_SRC = SHARED / "upstream" / "clients" / "ncnn" / "src"
HERE = Path(__file__).with_name("ncnn_demo")
NCNN_CPP = Path(os.environ.get("ZOO_NCNN_CPP_DIR") or ROOT.parent / ".zoo-ncnn-cpp")
RECTANGLE = "_ZN2cv9rectangleERNS_3MatENS_6Point_IiEES3_RKNS_7Scalar_IhEEi"  # cv::rectangle(Mat&, Point, Point, const Scalar&, int)
#: today's ncnn has no Extractor::set_num_threads (the thread count is the net's option); the demo's
#: one call of it, ex.set_num_threads(num_thread) with main.cpp's 1 thread, becomes the default light mode
#: (a no-op). The one change an app built on the demo makes to compile against today's ncnn.
API_BRIDGE = "-Dset_num_threads(n)=set_light_mode(true)"
MIN_IOU = 0.8  # set from the measurement in the module docstring's terms (README, "Drop-in")


def _missing(why: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """The original's demo, compiled unchanged (with the capture wrapper linked in front)."""
    if not (NCNN_CPP / "ready").is_file():
        _missing(f"no ncnn C++ library at {NCNN_CPP}: run scripts/build_ncnn_cpp.sh (or set ZOO_NCNN_CPP_DIR)")
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        _missing("no C++ compiler (apt-get install g++)")
    out = tmp_path_factory.mktemp("ncnn-demo") / "ultraface-demo"
    cmd = [cxx, "-O2", "-std=c++11", "-fopenmp", "-w", f"-I{HERE}", f"-I{NCNN_CPP / 'include' / 'ncnn'}", API_BRIDGE,
           str(DEMO_SRC / "main.cpp"), str(DEMO_SRC / "UltraFace.cpp"), str(HERE / "capture.cpp"),
           str(NCNN_CPP / "lib" / "libncnn.a"), f"-Wl,--wrap={RECTANGLE}", "-lpthread", "-o", str(out)]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, f"compiling the demo failed:\n{cp.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def png_photos(tmp_path_factory) -> Path:
    """Lossless copies of the pinned photos: the demo's imread (stb_image) and zoo's (libjpeg) then see the
    same pixels."""
    import cv2

    d = tmp_path_factory.mktemp("photos-png")
    for p in sorted(IMAGES.glob("*.jpg")):
        assert cv2.imwrite(str(d / (p.stem + ".png")), cv2.imread(str(p)))
    return d


def run_demo(demo: Path, param: Path, photos: Path, cwd: Path) -> dict[str, list]:
    """{photo name: boxes drawn}; the demo's own argument order: <ncnn bin> <ncnn param> [image files...]."""
    files = sorted(photos.glob("*.png"))
    cp = subprocess.run([str(demo), str(param.with_suffix(".bin")), str(param), *map(str, files)], cwd=cwd,
                        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, f"the demo failed ({cp.returncode}):\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
    out: dict[str, list] = {}
    current = None
    for line in cp.stdout.splitlines():
        if line.startswith("Processing "):
            current = Path(line[len("Processing "):].strip()).name
            out[current] = []
        elif line.startswith("drawn "):
            out[current].append([int(v) for v in line.split()[1:]])
    assert len(out) == len(files), cp.stdout[-2000:]
    return out


def zoo_detect(photos: Path, artifact: Path) -> dict[str, list]:
    cp = zoo("detect", photos, "--artifact", artifact, "--json", check=0)
    return {Path(r["image"]).name: [d["box"] for d in r["detections"]] for r in json.loads(cp.stdout)["results"]}


def _iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def match(drawn: list, boxes: list) -> tuple[int, float]:
    """(faces paired one to one, greedily by IoU; the lowest IoU of a pair)."""
    left = list(boxes)
    pairs, low = 0, 1.0
    for d in drawn:
        if not left:
            break
        ious = [_iou(d, b) for b in left]
        k = int(np.argmax(ious))
        if ious[k] <= 0:
            continue
        pairs += 1
        low = min(low, ious[k])
        left.pop(k)
    return pairs, low


def compare(drawn: dict, ours: dict) -> dict:
    """Totals over the photos: faces drawn by the demo, found by zoo, paired, the lowest IoU of a pair."""
    n_d = sum(len(v) for v in drawn.values())
    n_z = sum(len(v) for v in ours.values())
    paired, low = 0, 1.0
    for name, boxes in ours.items():
        p, lo = match(drawn.get(name, []), boxes)
        paired += p
        low = min(low, lo)
    return {"demo": n_d, "zoo": n_z, "paired": paired, "min_iou": round(low, 3)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_originals_ncnn_demo_finds_what_zoo_detect_finds(precision, demo, png_photos, export_dir, tmp_path):
    folder, manifest, cp = export_dir("rfb-320", "ncnn", "fp32,fp16,int8")
    assert manifest is not None, cp.stderr[-2000:]
    art = next(a for a in manifest["artifacts"] if a["precision"] == precision)
    param = folder / art["primary"]
    got = compare(run_demo(demo, param, png_photos, tmp_path), zoo_detect(png_photos, param))
    print(f"ncnn demo, {param.name}: {got}")
    assert got["zoo"] >= 250, got  # the pinned photos hold ~290 faces
    assert got["demo"] == got["zoo"] == got["paired"] and got["min_iou"] >= MIN_IOU, got


def _as_built_before(src: Path, dest: Path) -> Path:
    """A copy of our fp32 ncnn file as the exporter wrote it before issue 35: pnnx's blob names (in0, out0,
    out1) in the .param and in its sidecar's io, with the sidecar's file hashes to match."""
    import hashlib

    from zoo.exporters.ncnn.param import param_text, read_param, rename_blobs

    dest.mkdir()
    param = dest / src.name
    layers = read_param(src)
    back = {"input": "in0", "scores": "out0", "boxes": "out1"}
    rename_blobs(layers, back)
    param.write_text(param_text(layers))
    shutil.copyfile(src.with_suffix(".bin"), param.with_suffix(".bin"))
    side = json.loads(src.with_suffix(".json").read_text())
    io = side["io"]
    io["input_blob"] = "in0"
    io["output_blobs"] = {"scores": "out0", "boxes": "out1"}
    io["tensors"] = {back.get(k, k): v for k, v in io["tensors"].items()}
    for f in (param, param.with_suffix(".bin")):
        side["files"][f.name] = {"sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "bytes": f.stat().st_size}
    param.with_suffix(".json").write_text(json.dumps(side))
    return param


def test_files_built_before_still_load_and_the_demo_finds_nothing_in_them(demo, png_photos, export_dir, tmp_path):
    """The bug, and the compatibility promise: a file with pnnx's names gives the demo no face at all (ncnn
    finds no blob 'input'), while `zoo detect` still runs it (the runner reads the names from the metadata)
    and finds exactly what it finds in the renamed file."""
    folder, manifest, _ = export_dir("rfb-320", "ncnn", "fp32,fp16,int8")
    new = folder / next(a for a in manifest["artifacts"] if a["precision"] == "fp32")["primary"]
    old = _as_built_before(new, tmp_path / "old")
    assert "in0" in old.read_text() and " input " not in old.read_text()
    drawn = run_demo(demo, old, png_photos, tmp_path)
    assert sum(len(v) for v in drawn.values()) == 0, drawn
    assert zoo_detect(png_photos, old) == zoo_detect(png_photos, new)
