"""Issue 35: the original's OpenCV-DNN Python client (upstream/clients/caffe/ultra_face_opencvdnn_inference.py,
which runs an ONNX file through cv2.dnn.readNetFromONNX), run unchanged with --onnx_path on our raw ONNX
files (fp32, fp16, int8) over the pinned photos, draws what it draws on the original's own file of that
model (the raw head, which it decodes with its own priors).

The files are those the session's other tests export anyway (no export of this test's own): the raw
head of rfb-320 fp32 and int8 and of slim-320 fp32, fp16 and int8 (rfb-320 has no raw fp16 export in the
session: fp16's default head is decoded). Each is compared with the original's own file of its model,
version-RFB-320_simplified.onnx (the client's default) and version-slim-320_simplified.onnx: the client's
priors and decoding are the same for every 320x240 model of the family.

The client is an external program: tests/clients/capture.py runs it as __main__ and records each
cv2.rectangle call. It draws boxes as int32 pixels (truncated).

Why not `zoo detect --artifact`'s boxes: the client prepares its input with
cv2.dnn.blobFromImage(rect, 1/128, size, 127), and OpenCV reads the scalar mean 127 as (127, 0, 0): it
subtracts the mean from the first channel (red) only, where the network (and the original's ncnn and MNN
demos, and zoo) subtract it from all three. On the 16 pinned photos it draws 231 faces with the original's
version-RFB-320_simplified.onnx and with our rfb-320 raw fp32, where `zoo detect` finds 291 in ours
(--runtime opencv as much as onnxruntime). Our file is a drop-in for the client, bug included; an app built
on it gets the faces back by passing (127, 127, 127) (docs/dropin.md, "Drop-in for apps built on the original").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, SHARED

CLIENTS = SHARED / "upstream" / "clients"
CLIENT = CLIENTS / "caffe" / "ultra_face_opencvdnn_inference.py"
ORIGINALS = {"rfb-320": "version-RFB-320_simplified.onnx", "slim-320": "version-slim-320_simplified.onnx"}
#: (model, precision) -> the session's export holding its raw ONNX file: tests/pipeline/test_export_onnx.py
#: exports fp32 raw of both models and slim-320's fp16,int8 raw; the all-precision export of the target
#: tests (tests/targets) holds rfb-320's int8, whose default head is raw
FILES = {("rfb-320", "fp32"): ("fp32", "raw"), ("rfb-320", "int8"): ("fp32,fp16,int8", None),
         ("slim-320", "fp32"): ("fp32", "raw"), ("slim-320", "fp16"): ("fp16,int8", "raw"),
         ("slim-320", "int8"): ("fp16,int8", "raw")}
CAPTURE = Path(__file__).with_name("capture.py")
#: int8 under this client: every face it draws on the original's file (>= 99%, IoU 0.5), and at most 5%
#: more boxes. Not the int8 parity tier (<= 1% extra): that tier is gauged on the network's own input, and
#: the client's red-only mean feeds green and blue in [0, 2] instead of [-1, 1], outside the range int8 was
#: calibrated on. Measured on the 16 photos: rfb-320 int8 1 extra box of 231 (0.4%), slim-320 int8 6 of 177
#: (3.4%, small boxes of 11 to 33 px); under the network's own input both pass the parity tier
#: (tests/pipeline/test_export_onnx.py, tests/targets).
CLIENT_INT8_EXTRA = 0.05


def run_client(script: Path, args: list, out: Path, cwd: Path) -> dict[str, list]:
    """Run one of the original's Python clients unchanged; {image name: boxes drawn}."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",  # nothing written beside the shared clients
               PYTHONPATH=str(CLIENTS))  # its `vision` package, wherever it runs from
    cp = subprocess.run([sys.executable, str(CAPTURE), str(out), str(script), *map(str, args)], cwd=cwd,
                        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, env=env)
    assert cp.returncode == 0, f"{script.name} failed:\n{cp.stdout[-2000:]}\n{cp.stderr[-3000:]}"
    return json.loads(out.read_text())["images"]


def same_drawing(drawn: list, boxes: list, tol: float = 1.0) -> bool:
    """The same faces: one to one, every corner within tol px (of the truncated value, for float boxes)."""
    if len(drawn) != len(boxes):
        return False
    left = [np.floor(np.asarray(b, np.float64)) for b in boxes]
    for d in drawn:
        d = np.asarray(d, np.float64)
        errs = [np.abs(d - b).max() for b in left]
        if not errs or min(errs) > tol:
            return False
        left.pop(int(np.argmin(errs)))
    return True


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("client-photos")
    for p in sorted(IMAGES.glob("*.jpg")):
        (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="module")
def drawn_on_the_original(photos, tmp_path_factory):
    cache: dict[str, dict[str, list]] = {}

    def get(model_id: str) -> dict[str, list]:
        if model_id not in cache:
            d = tmp_path_factory.mktemp(f"client-original-{model_id}")
            cache[model_id] = run_client(CLIENT, ["--onnx_path", SHARED / "upstream" / "reference" / "onnx" /
                                                  ORIGINALS[model_id], "--imgs_path", photos, "--results_path",
                                                  d / "results"], d / "drawn.json", cwd=d)
        return cache[model_id]

    return get


def paired(drawn: list, boxes: list, min_iou: float = 0.5) -> int:
    """Faces of ``boxes`` drawn in ``drawn`` too (one to one, greedily, at IoU >= min_iou)."""
    left = [np.asarray(d, np.float64) for d in drawn]
    n = 0
    for b in boxes:
        b = np.asarray(b, np.float64)
        ious = [_iou(b, d) for d in left]
        if ious and max(ious) >= min_iou:
            left.pop(int(np.argmax(ious)))
            n += 1
    return n


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


@pytest.mark.parametrize("model_id,precision", sorted(FILES))
def test_the_opencv_dnn_client_draws_on_ours_what_it_draws_on_the_originals(model_id, precision, export_dir, photos,
                                                                             drawn_on_the_original, tmp_path):
    precisions, head = FILES[(model_id, precision)]
    folder, manifest, cp = export_dir(model_id, "onnx", precisions, head)
    assert manifest is not None, cp.stderr[-2000:]
    path = folder / next(a for a in manifest["artifacts"] if a["precision"] == precision)["primary"]
    assert path.name == f"{model_id}-raw-{precision}.onnx", path
    drawn = run_client(CLIENT, ["--onnx_path", path, "--imgs_path", photos, "--results_path", tmp_path / "results"],
                       tmp_path / "drawn.json", cwd=tmp_path)
    theirs = drawn_on_the_original(model_id)
    total = sum(len(v) for v in theirs.values())
    print(f"{path.name}: drawn {sum(len(v) for v in drawn.values())}, on the original's {total}")
    assert total >= 150 and sorted(drawn) == sorted(theirs) == sorted(p.name for p in IMAGES.glob("*.jpg"))
    if precision == "int8":
        kept = sum(paired(drawn[k], theirs[k]) for k in theirs)
        extra = sum(len(v) for v in drawn.values()) - kept
        assert kept >= 0.99 * total and extra <= CLIENT_INT8_EXTRA * total, (kept, extra, total)
    else:  # the same weights (fp16: rounded): the same boxes, to the pixel
        bad = {k: (len(drawn[k]), len(v)) for k, v in theirs.items() if not same_drawing(drawn[k], v, tol=1.0)}
        assert not bad, f"{path.name}: (ours, the original's) differ on {bad}"
