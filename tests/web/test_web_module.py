"""web/ultraface.js against zoo's Python on the pinned photos, in Node: the same network input bit for bit
(OpenCV's bilinear resize reproduced), the same priors, the same decoded boxes, and the same detections after
threshold and NMS (every face, boxes within 1e-4 of a pixel-normalised side, scores equal); the ONNX metadata
reader finds our metadata in an exported file."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES, ROOT, assert_built
from zoo.core import node
from zoo.core.images import read_bgr
from zoo.core.model import priors as P
from zoo.core.model.processing import decode, postprocess, preprocess

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(node.node_binary()[1] is not None, reason=f"no Node.js 18+: {node.node_binary()[1]}")


def run_module(job: dict, tmp: Path) -> dict:
    (tmp / "job.json").write_text(json.dumps(job))
    cp = subprocess.run([node.node_binary()[0], str(HERE / "module_check.mjs"), str(tmp / "job.json"), str(tmp)],
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr[-3000:]
    return json.loads((tmp / "result.json").read_text())


def f32(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<f4")


@pytest.fixture(scope="module")
def onnx_fp32(export_dir):
    folder, manifest, cp = export_dir("rfb-320", "onnx", "fp32,fp16,int8")
    assert_built(manifest, cp)  # exit 2 only for an honest int8 FAIL (rfb-320 onnx int8 is withheld)
    a = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    return folder / a["primary"]


def test_module_equals_python_on_the_pinned_photos(tmp_path, onnx_fp32):
    photos = sorted(IMAGES.glob("*.jpg"))
    assert len(photos) == 16
    w, h = 320, 240
    images, xs = [], []
    for i, p in enumerate(photos):
        bgr = read_bgr(p)
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        (tmp_path / f"{i}.rgb").write_bytes(rgb.tobytes())
        images.append({"rgb": str(tmp_path / f"{i}.rgb"), "width": bgr.shape[1], "height": bgr.shape[0]})
        xs.append(preprocess(bgr, w, h))
    x = np.concatenate(xs)
    scores, locations = raw_outputs(x)  # the PyTorch raw head: scores and box offsets
    (tmp_path / "scores.f32").write_bytes(scores.astype("<f4").tobytes())
    (tmp_path / "locations.f32").write_bytes(locations.astype("<f4").tobytes())
    sizes = [(320, 240), (640, 480), (1280, 720), (376, 280)]
    res = run_module({"images": images, "size": [w, h], "prior_sizes": sizes, "classes": 2,
                      "labels": ["BACKGROUND", "face"], "scores": str(tmp_path / "scores.f32"),
                      "locations": str(tmp_path / "locations.f32"), "candidate_size": 200, "onnx": str(onnx_fp32)},
                     tmp_path)
    for i, r in enumerate(res["inputs"]):  # the network input, bit for bit, in both layouts
        assert np.array_equal(f32(tmp_path / r["nchw"]), x[i].reshape(-1)), photos[i].name
        assert np.array_equal(f32(tmp_path / r["nhwc"]), x[i].transpose(1, 2, 0).reshape(-1)), photos[i].name
    for (pw, ph), name in zip(sizes, res["priors"]):
        assert np.array_equal(f32(tmp_path / name), P.generate_priors(pw, ph).reshape(-1)), (pw, ph)
    priors = P.generate_priors(w, h)
    faces = 0
    for i, p in enumerate(photos):
        boxes = decode(locations[i], priors)
        assert np.abs(f32(tmp_path / f"boxes{i}") - boxes.reshape(-1)).max() <= 1e-6, p.name
        want = postprocess(scores[i], boxes, images[i]["width"], images[i]["height"], ["BACKGROUND", "face"])
        got = res["detections"][i]
        assert len(got) == len(want), p.name
        side = np.array([images[i]["width"], images[i]["height"]] * 2, dtype=np.float64)
        for g, d in zip(got, want):
            assert g["label"] == d.label and abs(g["score"] - d.score) <= 1e-7
            assert np.abs(np.array(g["box"]) / side - np.array(d.box) / side).max() <= 1e-4
        faces += len(want)
    assert faces > 200  # the photos hold hundreds of faces: the comparison has teeth
    meta = json.loads(res["onnx"]["zoo.meta"])
    assert meta["model_id"] == "rfb-320" and meta["head"] == "decoded"


def test_the_export_ships_the_module_tested_here(onnx_fp32):
    """The export folder holds web/ultraface.js, listed with its sha256: the very bytes this file tests."""
    folder = onnx_fp32.parents[1]
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = next((f for f in manifest.get("files", []) if f["path"] == "web/ultraface.js"), None)
    assert entry is not None, manifest.get("files")
    data = (folder / entry["path"]).read_bytes()
    assert data == (ROOT / "zoo" / "web" / "ultraface.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]


def raw_outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from zoo.checkpoints.resolve import resolve_model

    net = resolve_model("rfb-320").build(head="raw")
    with torch.inference_mode():
        s, loc = net(torch.from_numpy(x))
    return s.numpy(), loc.numpy()
