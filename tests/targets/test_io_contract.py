"""Issue 35: the I/O contract of each format the original ships a file of (zoo/core/data/io_contract.toml,
read through zoo.core.contract), held against the original's own files and against every artifact we
make of that format (every precision and head of rfb-320): input name, layout and shape, output names,
order and shapes, what each output of the head holds, and the pre-processing in the metadata.

Each file is read the way an app reads it, in its own runtime, by the names the contract gives (none of
our runners): onnxruntime, MNN's session API, ncnn's extractor, OpenCV's Caffe importer, LiteRT's
interpreter. Where ours differs from the original on purpose, the contract names the difference (and
docs/dropin.md says what an app changes); any other difference fails.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import IMAGES, REFERENCE
from zoo.core.contract import Side, TensorSpec, contract, differences, io_contract
from zoo.exporters import get_target

FORMATS = sorted(contract().formats)
MODEL = "rfb-320"


@dataclass
class Seen:
    """A file's I/O as an app sees it: names, concrete shapes, the input dtype, and the outputs of one photo."""

    input: tuple[str, tuple[int, ...]]
    outputs: list[tuple[str, tuple[int, ...]]]  # in the file's order
    input_dtype: str = "float32"
    values: dict = field(default_factory=dict)  # output name -> array (one photo)

    def side(self, roles: dict[str, str]) -> Side:
        """As a contract Side (shapes concrete); ``roles`` maps output names to scores/boxes."""
        return Side(TensorSpec(self.input[0], self.input[1], "input"),
                    tuple(TensorSpec(n, s, roles.get(n, n)) for n, s in self.outputs))


def _photo_nchw(width: int, height: int) -> np.ndarray:
    from zoo.core.images import load_batch

    x, _, _ = load_batch([IMAGES / "1.jpg"], width, height)
    return x


def _read_onnx(path: Path, x: np.ndarray, names: list[str]) -> Seen:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    (i,) = s.get_inputs()
    outs = s.run(None, {i.name: x.astype(np.float32)})  # by position, as an app using run(None, ...)
    return Seen((i.name, tuple(i.shape)), [(o.name, tuple(v.shape)) for o, v in zip(s.get_outputs(), outs)],
                values={o.name: v for o, v in zip(s.get_outputs(), outs)})


def _read_mnn(path: Path, x: np.ndarray, names: list[str]) -> Seen:
    import MNN

    it = MNN.Interpreter(str(path))
    s = it.createSession()
    inp = it.getSessionInput(s)  # the demo's call: the one input, no name
    (in_name,) = it.getSessionInputAll(s).keys()
    in_shape = tuple(inp.getShape())
    x = np.ascontiguousarray(x, np.float32)  # kept alive while MNN reads it
    inp.copyFrom(MNN.Tensor(tuple(x.shape), MNN.Halide_Type_Float, x, MNN.Tensor_DimensionType_Caffe))
    it.runSession(s)
    shapes = {n: tuple(t.getShape()) for n, t in it.getSessionOutputAll(s).items()}
    values = {}
    for n in names:  # by name, as the demo: getSessionOutput(session, "scores")
        t = it.getSessionOutput(s, n)
        buf = np.zeros(shapes[n], np.float32)
        host = MNN.Tensor(shapes[n], MNN.Halide_Type_Float, buf, MNN.Tensor_DimensionType_Caffe)
        t.copyToHostTensor(host)
        values[n] = np.array(host.getNumpyData(), copy=True).reshape(shapes[n])
    return Seen((in_name, in_shape), [(n, shapes[n]) for n in sorted(shapes)], values=values)


def _read_ncnn(path: Path, x: np.ndarray, names: list[str]) -> Seen:
    import ncnn

    from zoo.exporters.ncnn.param import input_blobs, output_blobs, read_param

    layers = read_param(path)
    (in_name,) = input_blobs(layers)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    int8 = any(ly.geti(8) for ly in layers if ly.type in ("Convolution", "ConvolutionDepthWise"))
    net.opt.use_int8_inference = int8
    assert net.load_param(str(path)) == 0 and net.load_model(str(path.with_suffix(".bin"))) == 0
    ex = net.create_extractor()
    x = np.ascontiguousarray(x[:1], np.float32)
    chw = x[0]
    assert ex.input(in_name, ncnn.Mat(x, batch_index=0).clone()) == 0  # the app's call: by name
    values, shapes = {}, {}
    for n in output_blobs(layers):
        rc, m = ex.extract(n)
        assert rc == 0 and not m.empty(), n
        shapes[n] = (m.h, m.w) if m.dims == 2 else (m.c, m.h, m.w)
        values[n] = np.array(m.numpy(), copy=True)[None]
    ex.clear()  # before the net: an extractor outliving its net crashes ncnn
    net.clear()
    return Seen((in_name, tuple(chw.shape)), [(n, shapes[n]) for n in output_blobs(layers)], values=values)


def _read_caffe(path: Path, x: np.ndarray, names: list[str]) -> Seen:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(path), str(path.with_suffix(".caffemodel")))
    net.setInput(np.ascontiguousarray(x, np.float32))
    outs = list(net.getUnconnectedOutLayersNames())
    got = net.forward(names)  # by name, as the client: net.forward(["boxes", "scores"])
    values = dict(zip(names, got))
    in_name, dims = _caffe_input(path)
    return Seen((in_name, tuple(dims)), [(n, tuple(values[n].shape)) for n in outs], values=values)


def _caffe_input(prototxt: Path) -> tuple[str, list[int]]:
    """The top and dims of the prototxt's Input layer (OpenCV DNN does not name its input)."""
    import re

    text = prototxt.read_text()
    m = re.search(r'layer\s*\{[^{}]*?type:\s*"Input"[^{}]*?top:\s*"([^"]+)"\s*input_param\s*\{\s*shape\s*\{([^{}]*)\}', text)
    assert m, f"{prototxt}: no Input layer"
    return m.group(1), [int(v) for v in re.findall(r"dim:\s*(\d+)", m.group(2))]


def _read_tflite(path: Path, x: np.ndarray, names: list[str]) -> Seen:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path))
    it.allocate_tensors()
    (ind,) = it.get_input_details()
    outd = it.get_output_details()  # the file's output order: what apps index
    by_index = {d["index"]: d["name"] for d in [ind, *outd]}
    if it.get_signature_list():  # ours: the signature's names for the same tensors (own interpreter: a
        r = Interpreter(str(path)).get_signature_runner()  # signature runner holds on to its tensors)
        by_index.update({d["index"]: n for n, d in r.get_input_details().items()})
        by_index.update({d["index"]: n for n, d in r.get_output_details().items()})
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32)
    if ind["dtype"] == np.int8:
        scale, zero = ind["quantization"]
        xin = np.clip(np.round(xin / scale + zero), -128, 127).astype(np.int8)
    it.set_tensor(ind["index"], xin)
    it.invoke()
    values = {}
    for d in outd:
        v = it.get_tensor(d["index"])
        if d["dtype"] == np.int8:
            scale, zero = d["quantization"]
            v = (v.astype(np.float32) - zero) * scale
        values[by_index[d["index"]]] = v
    return Seen((by_index[ind["index"]], tuple(int(v) for v in ind["shape"])),
                [(by_index[d["index"]], tuple(values[by_index[d["index"]]].shape)) for d in outd],
                input_dtype=np.dtype(ind["dtype"]).name, values=values)


READERS = {"onnx": _read_onnx, "mnn": _read_mnn, "ncnn": _read_ncnn, "caffe": _read_caffe, "tflite": _read_tflite}


def _roles(side: Side) -> dict[str, str]:
    return {o.name: o.role for o in side.outputs}


def _expected(side: Side, width: int, height: int, k: int = 2) -> tuple:
    return ((side.input.name, side.input.resolve(width, height, k)),
            [(o.name, o.resolve(width, height, k)) for o in side.outputs])


def _as_seen(seen: Seen, ordered: bool) -> tuple:
    outs = seen.outputs if ordered else sorted(seen.outputs)
    return seen.input, outs


def _check_values(head: str, seen: Seen, side: Side, width: int, height: int) -> None:
    """What each output holds, per head (zoo/core/data/io_contract.toml [heads])."""
    from zoo.core.model import priors as P
    from zoo.core.model.processing import decode

    hv = contract().heads[head]
    scores = np.asarray(seen.values[side.output("scores").name], np.float32).reshape(-1, 2)
    boxes = np.asarray(seen.values[side.output("boxes").name], np.float32).reshape(-1, 4)
    assert scores.min() >= -1e-3 and scores.max() <= 1 + 1e-3
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=2e-2)
    faces = scores[:, 1] > 0.7
    assert faces.sum() >= 3, "the photo should show faces"
    ordered = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    if hv.boxes_kind == "corners":
        assert ordered.all(), "corner boxes have x1 <= x2 and y1 <= y2"
        corners = boxes
    else:
        assert not ordered.all(), "prior offsets read as corners would all be ordered"
        corners = decode(boxes, P.generate_priors(width, height))
    assert corners[faces].min() > -0.1 and corners[faces].max() < 1.1, "faces inside the picture"


def _check_file(target: str, path: Path, head: str, precision: str, width=320, height=240, ours=True) -> list[str]:
    """Hold one file to the contract; returns the differences from the original's file it has."""
    c = io_contract(target)
    side = c.ours if ours else c.original
    seen = READERS[target](path, _photo_nchw(width, height), [o.name for o in side.outputs])
    assert _as_seen(seen, c.ordered) == _as_seen(Seen(*_expected(side, width, height)), c.ordered), \
        f"{path.name}: I/O {seen.input}, {seen.outputs} is not the contract's {_expected(side, width, height)}"
    assert seen.input_dtype == ("int8" if precision == "int8-io" else "float32")
    _check_values(head, seen, side, width, height)
    return differences(seen.side(_roles(side)), c.original.resolved(width, height, 2), c.ordered)


def _need(target: str) -> None:
    t = get_target(target)
    if not t.available():
        pytest.skip(f"{target} runtime not installed: {t.missing()}")


@pytest.mark.parametrize("target", FORMATS)
def test_the_originals_files_follow_the_contract(target):
    """The contract describes the original's files (so an app built on them finds what it expects)."""
    _need(target)
    c = io_contract(target)
    assert c.references, target
    for head, files in c.references.items():
        for rel in files:
            width, height = (640, 480) if "640" in rel else (320, 240)
            _check_file(target, REFERENCE / rel, head, "fp32", width, height, ours=False)


def _other_head(target: str) -> str:
    """The head fp32 is not exported with by default (of the contract's two)."""
    t = get_target(target)
    return next(h for h in t.heads if h in contract().heads and h != t.default_head("fp32"))


def _artifacts(export_dir, target):
    """Every artifact of ``target`` the session exports: every precision with its default head (the target
    tests' export, tests/targets/test_targets.py) and fp32 with the other head. The other head comes from
    ONE export of every contract format that needs it, with the keys the session already has where it
    has them (ONNX's raw fp32: the ONNX tests'; the rest: one decoded export of caffe, mnn, ncnn, tflite)."""
    t = get_target(target)
    head = _other_head(target)
    together = [f for f in FORMATS if _other_head(f) == head and get_target(f).available()]
    out = []
    for targets, precisions, h in ((target, ",".join(t.precisions), None), (",".join(together), "fp32", head)):
        folder, manifest, cp = export_dir(MODEL, targets, precisions, h)
        assert manifest is not None, cp.stderr[-2000:]
        out += [(folder, a) for a in manifest["artifacts"] if a["target"] == target]
    return out


@pytest.mark.parametrize("target", FORMATS)
def test_every_artifact_follows_the_contract(target, export_dir):
    """Every precision and head of ours: names, order, shapes, values per head and the pre-processing in the
    metadata; where it differs from the original's file, the contract names the difference."""
    _need(target)
    c = io_contract(target)
    pre = contract().preprocessing
    seen_heads = set()
    for folder, a in _artifacts(export_dir, target):
        path = folder / a["primary"]
        meta = a["meta"]
        assert (meta["mean"], 1.0 / meta["std"], meta["color"]) == (pre.mean, pre.scale, pre.color), a["primary"]
        assert meta["layout"] == ("NHWC" if c.layout == "NHWC" else "NCHW")
        if path.suffix not in (".onnx", ".tflite"):  # formats without embedded metadata: the sidecar says it too
            side = json.loads(path.with_suffix(".json").read_text())
            assert (side["mean"], side["std"], side["color"]) == (meta["mean"], meta["std"], meta["color"])
        found = _check_file(target, path, a["head"], a["precision"])
        named = [d.what for d in c.differences_for(a["precision"]) if d.what != "dtypes"]
        assert sorted(found) == sorted(named), f"{a['primary']}: differs from the original's in {found}, named {named}"
        seen_heads.add(a["head"])
    assert seen_heads == {"raw", "decoded"}


def test_ncnn_files_carry_the_originals_blob_names(export_dir):
    """The issue's report: the original's ncnn calls (ex.input('input'), ex.extract('scores'/'boxes')) find
    their blobs in every ncnn file we make; pnnx's names (in0, out0, out1) are gone from the interface."""
    _need("ncnn")
    from zoo.exporters.ncnn.param import input_blobs, output_blobs, read_param

    for folder, a in _artifacts(export_dir, "ncnn"):
        layers = read_param(folder / a["primary"])
        assert input_blobs(layers) == ["input"] and sorted(output_blobs(layers)) == ["boxes", "scores"], a["primary"]
        io = a["meta"]["io"]
        assert io["input_blob"] == "input" and io["output_blobs"] == {"scores": "scores", "boxes": "boxes"}
