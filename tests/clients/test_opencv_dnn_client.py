"""Issue 35: the original's OpenCV-DNN Python client (upstream/clients/caffe/ultra_face_opencvdnn_inference.py,
which runs an ONNX file through cv2.dnn.readNetFromONNX), run unchanged on our raw ONNX files (fp32, fp16,
int8) over the pinned photos, draws the same boxes as `zoo detect --artifact` with the same runtime.

The client is an external program: tests/clients/capture.py runs it as __main__ and records each
cv2.rectangle call. It decodes the priors itself, so our raw head is its drop-in; it draws boxes as
int32 pixels (truncated), `zoo detect --json` prints them to 0.01 px: equal means the same faces, each
corner within 1 px.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, SHARED, zoo

CLIENTS = SHARED / "upstream" / "clients"
CLIENT = CLIENTS / "caffe" / "ultra_face_opencvdnn_inference.py"
CAPTURE = Path(__file__).with_name("capture.py")


def run_client(script: Path, args: list, out: Path, cwd: Path) -> dict[str, list]:
    """Run one of the original's Python clients unchanged; {image name: boxes drawn}."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",  # nothing written beside the shared clients
               PYTHONPATH=str(CLIENTS))  # its `vision` package, wherever it runs from
    cp = subprocess.run([sys.executable, str(CAPTURE), str(out), str(script), *map(str, args)], cwd=cwd,
                        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, env=env)
    assert cp.returncode == 0, f"{script.name} failed:\n{cp.stdout[-2000:]}\n{cp.stderr[-3000:]}"
    return json.loads(out.read_text())["images"]


def zoo_boxes(folder: Path, artifact: Path, runtime: str | None = None) -> dict[str, list]:
    args = ["detect", folder, "--artifact", artifact, "--json"] + (["--runtime", runtime] if runtime else [])
    cp = zoo(*args, check=0)
    return {Path(r["image"]).name: [d["box"] for d in r["detections"]] for r in json.loads(cp.stdout)["results"]}


def same_drawing(drawn: list, boxes: list, tol: float = 1.0) -> bool:
    """The client's int boxes and zoo's float boxes are the same faces: one to one, corners within tol px
    of the truncated float (the client truncates pixel coordinates to int32)."""
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


def compare(drawn: dict, ours: dict) -> dict:
    """Per image: (faces drawn by the client, by zoo, whether they are the same boxes)."""
    return {name: (len(drawn.get(name, [])), len(ours[name]), same_drawing(drawn.get(name, []), ours[name]))
            for name in sorted(ours)}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("client-photos")
    for p in sorted(IMAGES.glob("*.jpg")):
        (d / p.name).symlink_to(p)
    return d


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_opencv_dnn_client_draws_what_zoo_detect_finds(precision, export_dir, photos, tmp_path):
    folder, manifest, cp = export_dir("rfb-320", "onnx", "fp32,fp16,int8", "raw")
    assert manifest is not None, cp.stderr[-2000:]
    art = next(a for a in manifest["artifacts"] if a["precision"] == precision)
    path = folder / art["primary"]
    drawn = run_client(CLIENT, ["--onnx_path", path, "--imgs_path", photos, "--results_path", tmp_path / "results"],
                       tmp_path / "drawn.json", cwd=tmp_path)
    table = compare(drawn, zoo_boxes(photos, path, runtime="opencv"))  # the client's runtime: OpenCV DNN
    assert sum(v[0] for v in table.values()) >= 250, table  # the pinned photos hold ~290 faces
    bad = {k: v for k, v in table.items() if not v[2]}
    assert not bad, f"{path.name}: (client, zoo detect, same) differ on {bad}"
