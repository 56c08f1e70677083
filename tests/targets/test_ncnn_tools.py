"""ncnn toolkit: pnnx conversion parity, fp16 storage, our int8 quantizer, and the runner.

Real runtimes only (pnnx, ncnn, onnxruntime) on the reference ONNX/ncnn files and the
16 shared photos.  Located via ZOO_SHARED (default ../shared beside the repo).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ncnn = pytest.importorskip("ncnn", reason="ncnn Python package not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
cv2 = pytest.importorskip("cv2", reason="opencv not installed")

from zoo.exporters.ncnn import convert  # noqa: E402
from zoo.exporters.ncnn.convert import onnx_to_ncnn  # noqa: E402
from zoo.exporters.ncnn.param import (  # noqa: E402
    file_size, input_blobs, load_pair, output_blobs, read_param, weight_storage,
)
from zoo.exporters.ncnn.quantize import quantize_int8  # noqa: E402
from zoo.exporters.ncnn.runner import NcnnNet  # noqa: E402
from zoo.core.errors import ZooError  # noqa: E402
from zoo.core.model.priors import generate_priors  # noqa: E402

SHARED = Path(os.environ.get("ZOO_SHARED", REPO.parent / "shared"))
ONNX_DIR = SHARED / "upstream" / "reference" / "onnx"
REF_NCNN = SHARED / "upstream" / "reference" / "ncnn"
IMAGES = sorted((SHARED / "images").glob("*.jpg"))
W, H = 320, 240

pytestmark = pytest.mark.skipif(
    not (ONNX_DIR / "version-RFB-320_simplified.onnx").is_file() or not IMAGES,
    reason=f"shared reference files not found under {SHARED}",
)


def _has_pnnx() -> bool:
    try:
        convert._pnnx_executable()
        return True
    except ZooError:
        return False


needs_pnnx = pytest.mark.skipif(not _has_pnnx(), reason="pnnx not installed")


# --------------------------------------------------------------------------- helpers
def _preprocess(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    img = cv2.cvtColor(cv2.resize(img, (W, H)), cv2.COLOR_BGR2RGB).astype(np.float32)
    return ((img - 127.0) / 128.0).transpose(2, 0, 1)


def _decode(loc: np.ndarray, pri: np.ndarray) -> np.ndarray:
    c = loc[:, :2] * 0.1 * pri[:, 2:] + pri[:, :2]
    s = np.exp(loc[:, 2:] * 0.2) * pri[:, 2:]
    return np.concatenate([c - s / 2, c + s / 2], 1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def _detect(scores: np.ndarray, boxes: np.ndarray, thr=0.7, iou_thr=0.3, candidates=200) -> list[np.ndarray]:
    """Per image: decode, keep face score > thr, hard NMS; returns corner boxes."""
    pri = generate_priors(W, H)
    out = []
    for sc, loc in zip(scores, boxes):
        b = _decode(loc, pri)
        s = sc[:, 1]
        keep = s > thr
        b, s = b[keep], s[keep]
        order = np.argsort(-s, kind="stable")[:candidates]
        picked = []
        while order.size:
            i = order[0]
            picked.append(i)
            order = order[1:][_iou(b[i:i + 1], b[order[1:]])[0] <= iou_thr] if order.size > 1 else order[1:]
        out.append(b[picked])
    return out


def _match(ref: list[np.ndarray], got: list[np.ndarray], thr=0.5) -> tuple[float, float, int]:
    """(fraction of ref detections matched at IoU >= thr, extra detections / len(ref), len(ref))."""
    total = matched = extra = 0
    for a, b in zip(ref, got):
        total += len(a)
        if len(a) == 0 or len(b) == 0:
            extra += len(b)
            continue
        m = _iou(a, b)
        used: set[int] = set()
        k = 0
        for i in np.argsort(-m.max(1)):
            cand = [j for j in np.argsort(-m[i]) if j not in used and m[i, j] >= thr]
            if cand:
                used.add(cand[0])
                k += 1
        matched += k
        extra += len(b) - k
    return matched / max(total, 1), extra / max(total, 1), total


def _ref_blobs(param: Path) -> tuple[str, list[str]]:
    layers = read_param(param)
    return input_blobs(layers)[0], output_blobs(layers)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.stack([_preprocess(p) for p in IMAGES])


@pytest.fixture(scope="module")
def onnx_out(images):
    cache = {}

    def get(model: str):
        if model not in cache:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(ONNX_DIR / f"version-{model}-320_simplified.onnx"), so,
                                        providers=["CPUExecutionProvider"])
            res = [sess.run(["scores", "boxes"], {"input": images[i:i + 1]}) for i in range(len(images))]
            cache[model] = (np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res]))
        return cache[model]

    return get


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ncnn")


@pytest.fixture(scope="module")
def converted(workdir):
    cache = {}

    def get(model: str, fp16: bool):
        key = (model, fp16)
        if key not in cache:
            out = workdir / f"{model}_{'fp16' if fp16 else 'fp32'}"
            cache[key] = onnx_to_ncnn(ONNX_DIR / f"version-{model}-320_simplified.onnx", out,
                                         f"{model}-320", fp16=fp16)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def quantized(converted, images, workdir):
    cache = {}

    def get(model: str):
        if model not in cache:
            conv = converted(model, False)
            out = workdir / f"{model}_int8"
            info = quantize_int8(conv["param"], conv["bin"], images, out / f"{model}-320-int8.param",
                                    out / f"{model}-320-int8.bin")
            cache[model] = (conv, info)
        return cache[model]

    return get


def _run(conv: dict, x: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    s, b = conv["output_blobs"]["scores"], conv["output_blobs"]["boxes"]
    with NcnnNet(conv["param"], conv["bin"], input_blob=conv["input_blob"], output_blobs=[s, b], **kw) as net:
        o = net.infer(x)
    return o[s], o[b]


# --------------------------------------------------------------------------- conversion
@needs_pnnx
def test_fp32_conversion_matches_onnxruntime(converted, images, onnx_out):
    conv = converted("RFB", False)
    out_dir = Path(conv["param"]).parent
    assert sorted(p.name for p in out_dir.iterdir()) == ["RFB-320.bin", "RFB-320.param"]  # no pnnx by-products
    assert conv["input_blob"] == "input" and conv["weights"] == "fp32"
    assert conv["input_shape"] == [1, 3, H, W]
    with NcnnNet(conv["param"], conv["bin"]) as net:  # shape read back from the Input layer
        assert net.input_shape == (3, H, W)
        with pytest.raises(ZooError, match="takes input"):
            net.infer(np.zeros((1, 3, 100, 100), np.float32))  # pnnx baked 320x240 into Reshapes
    assert set(weight_storage(conv["param"], conv["bin"]).values()) == {"fp32"}
    ref_scores, ref_boxes = onnx_out("RFB")
    scores, boxes = _run(conv, images)
    assert scores.shape == (len(IMAGES), 4420, 2) and boxes.shape == (len(IMAGES), 4420, 4)
    for i in range(len(IMAGES)):  # every image individually
        assert np.abs(scores[i] - ref_scores[i]).max() <= 1e-4, IMAGES[i].name
        assert np.abs(boxes[i] - ref_boxes[i]).max() <= 1e-4, IMAGES[i].name


@needs_pnnx
def test_ours_matches_reference_ncnn_files(converted, images):
    ref_param, ref_bin = REF_NCNN / "RFB-320.param", REF_NCNN / "RFB-320.bin"
    if not ref_param.is_file():
        pytest.skip("reference ncnn files missing")
    in_blob, outs = _ref_blobs(ref_param)
    assert in_blob == "input" and set(outs) == {"scores", "boxes"}
    with NcnnNet(ref_param, ref_bin, input_blob=in_blob, output_blobs=["scores", "boxes"]) as net:
        ref = net.infer(images)
    scores, boxes = _run(converted("RFB", False), images)
    assert np.abs(scores - ref["scores"]).max() <= 1e-4
    assert np.abs(boxes - ref["boxes"]).max() <= 1e-4


@needs_pnnx
def test_fp16_conversion_stores_fp16_and_stays_close(converted, images, onnx_out):
    c32, c16 = converted("RFB", False), converted("RFB", True)
    assert c16["weights"] == "fp16"
    assert set(weight_storage(c16["param"], c16["bin"]).values()) == {"fp16"}
    ratio = os.path.getsize(c16["bin"]) / os.path.getsize(c32["bin"])
    assert 0.45 <= ratio <= 0.55, ratio
    ref_scores, ref_boxes = onnx_out("RFB")
    for fp16_runtime in (False, True):
        scores, boxes = _run(c16, images, fp16=fp16_runtime)
        assert np.abs(scores - ref_scores).max() <= 1e-2
        assert np.abs(boxes - ref_boxes).max() <= 1e-1
        kept, extra, _ = _match(_detect(ref_scores, ref_boxes), _detect(scores, boxes))
        assert kept >= 0.99 and extra <= 0.01


def test_conversion_errors_are_zooerrors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ZooError):
        onnx_to_ncnn(bad, tmp_path / "out", "x", fp16=False)
    with pytest.raises(ZooError):
        onnx_to_ncnn(tmp_path / "missing.onnx", tmp_path / "out", "x", fp16=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _fake_pnnx(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "fake_pnnx"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.skipif(os.name == "nt", reason="uses a POSIX shell script as a fake pnnx")
def test_pnnx_failure_and_timeout_become_zooerrors(tmp_path, monkeypatch):
    onnx_file = ONNX_DIR / "version-slim-320_simplified.onnx"
    out = tmp_path / "out"
    fake = _fake_pnnx(tmp_path, "echo 'pass_level1 onnx'\necho 'error: unsupported op FooBar' >&2\nexit 3")
    monkeypatch.setattr(convert, "_pnnx_executable", lambda: fake)
    with pytest.raises(ZooError, match="(?s)exit code 3.*unsupported op FooBar"):
        onnx_to_ncnn(onnx_file, out, "m", fp16=False)
    slow = _fake_pnnx(tmp_path, "exec sleep 30")
    monkeypatch.setattr(convert, "_pnnx_executable", lambda: slow)
    with pytest.raises(ZooError, match="timed out"):
        onnx_to_ncnn(onnx_file, out, "m", fp16=False, timeout=0.5)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


@needs_pnnx
def test_640_with_postprocessing_converts(tmp_path):
    """version-RFB-640.onnx (decoded boxes, priors as a constant -> ncnn MemoryData)."""
    onnx_file = ONNX_DIR / "version-RFB-640.onnx"
    if not onnx_file.is_file():
        pytest.skip("version-RFB-640.onnx missing")
    conv = onnx_to_ncnn(onnx_file, tmp_path, "RFB-640", fp16=False)
    assert conv["input_shape"] == [1, 3, 480, 640]
    x = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (640, 480)), cv2.COLOR_BGR2RGB)
                  .astype(np.float32).transpose(2, 0, 1) for p in IMAGES[:2]])
    x = (x - 127.0) / 128.0
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
    scores, boxes = _run(conv, x)
    for i in range(len(x)):
        ref_s, ref_b = sess.run(["scores", "boxes"], {"input": x[i:i + 1]})
        assert np.abs(scores[i] - ref_s[0]).max() <= 1e-4
        assert np.abs(boxes[i] - ref_b[0]).max() <= 1e-4


# --------------------------------------------------------------------------- runner
def _load(*args, **kw) -> None:
    """Load a net and release it: the files are checked and loaded on ``__enter__``."""
    with NcnnNet(*args, **kw):
        pass


def test_runner_loads_on_enter_and_releases_on_exit(tmp_path, images):
    net = NcnnNet(tmp_path / "missing.param", tmp_path / "missing.bin")  # nothing read yet
    with pytest.raises(ZooError, match="not found"):
        net.__enter__()
    ref_param, ref_bin = REF_NCNN / "RFB-320.param", REF_NCNN / "RFB-320.bin"
    if not ref_param.is_file():
        pytest.skip("reference ncnn files missing")
    net = NcnnNet(ref_param, ref_bin, input_blob="input", output_blobs=["scores"])
    with pytest.raises(ZooError, match="outside"):
        net.infer(images[:1])
    with net:
        assert net.infer(images[:1])["scores"].shape == (1, 4420, 2)
    with pytest.raises(ZooError, match="outside"):
        net.infer(images[:1])


def test_runner_failures_are_zooerrors(tmp_path, images):
    ref_param, ref_bin = REF_NCNN / "RFB-320.param", REF_NCNN / "RFB-320.bin"
    if not ref_param.is_file():
        pytest.skip("reference ncnn files missing")
    bad = tmp_path / "bad.param"
    bad.write_text("7767517\n1 1\nNoSuchLayerType  x  0 1 x\n")
    with pytest.raises(ZooError):
        _load(bad, ref_bin)
    with pytest.raises(ZooError, match="load_model"):
        short = tmp_path / "short.bin"
        short.write_bytes(ref_bin.read_bytes()[:1000])
        _load(ref_param, short, input_blob="input")
    with pytest.raises(ZooError, match="input blob"):
        _load(ref_param, ref_bin, input_blob="in0")
    with pytest.raises(ZooError, match="output blobs"):
        _load(ref_param, ref_bin, input_blob="input", output_blobs=["nope"])
    with NcnnNet(ref_param, ref_bin, input_blob="input") as net:
        with pytest.raises(ZooError):
            net.infer(images[0])  # 3-D, not (N,C,H,W)
    # the reference file has no recorded size: pass it; ours records it (see the int8 tests)
    with NcnnNet(ref_param, ref_bin, input_blob="input", input_shape=(3, H, W)) as net:
        with pytest.raises(ZooError, match="takes input"):
            net.infer(np.zeros((1, 3, 100, 100), np.float32))


# --------------------------------------------------------------------------- int8
@needs_pnnx
@pytest.mark.parametrize("model", ["RFB", "slim"])
def test_int8_keeps_detections_and_is_small(model, quantized, images, onnx_out):
    conv, info = quantized(model)
    assert set(weight_storage(info["param"], info["bin"]).values()) == {"fp32", "int8"}
    assert len(info["int8_layers"]) > len(info["fp32_layers"])
    int8_size = file_size(info["param"], info["bin"])
    fp32_size = file_size(conv["param"], conv["bin"])
    assert int8_size <= 0.45 * fp32_size, int8_size / fp32_size
    ref = _detect(*onnx_out(model))
    scores, boxes = _run({**conv, "param": info["param"], "bin": info["bin"]}, images, int8=True)
    kept, extra, total = _match(ref, _detect(scores, boxes))
    assert total > 100
    assert kept >= 0.97, kept
    assert extra <= 0.03, extra


@needs_pnnx
def test_ncnn_really_executes_int8(quantized, images):
    """Conclusive observable: a quantized 1x1 conv inside the real model reproduces integer
    arithmetic exactly, which a float kernel cannot.

    We pull the layer's input blob (float, off the int8 grid) and its output blob out of the
    running int8 net.  An int8 kernel rounds the input to q = clamp(round(x * s_in)), sums
    q * w_q in integers and rescales -- we simulate exactly that in NumPy with the scales the
    quantizer wrote.  A float fallback (even one that dequantizes the stored int8 weights)
    computes sum(x * w_q / s_w) instead.  The two candidates differ by the input-rounding
    error; ncnn must land on the integer one with an error orders of magnitude smaller.
    """
    conv, info = quantized("RFB")
    layers = {ly.name: ly for ly in read_param(info["param"])}
    stored = load_pair(info["param"], info["bin"])[2]
    pw = [n for n in info["int8_layers"]
          if layers[n].type == "Convolution" and layers[n].geti(1) == 1 and layers[n].geti(7, 1) == 1]
    assert len(pw) >= 5, "too few int8 1x1 convolutions to observe"
    blobs = sorted({b for n in pw for b in (layers[n].bottoms[0], layers[n].tops[0])})
    with NcnnNet(info["param"], info["bin"], int8=True, lightmode=False) as net:
        got = net.infer(images[:2], blobs=blobs)

    for name in pw:
        ly, data = layers[name], stored[name]
        assert data.dtype == "int8" and ly.geti(8) == 2
        n_out = ly.geti(0)
        wq = data.weight.astype(np.int64).reshape(n_out, -1)
        s_w = data.weight_scales.astype(np.float64)
        s_in = float(data.bottom_scale)
        bias = data.bias.astype(np.float64) if data.bias is not None else np.zeros(n_out)
        x32 = got[ly.bottoms[0]].reshape(2, wq.shape[1], -1)
        y = got[ly.tops[0]].astype(np.float64).reshape(2, n_out, -1)

        scaled = x32 * np.float32(s_in)  # float32 product, rounded half-to-even like the kernel
        q = np.clip(np.round(scaled), -127, 127).astype(np.int64)
        assert np.abs(q - scaled).mean() > 0.05  # the input really is off the int8 grid
        acc = np.einsum("ok,nkp->nop", wq, q)  # exact integer sums
        int8_sim = acc / (s_in * s_w)[None, :, None] + bias[None, :, None]
        float_sim = np.einsum("ok,nkp->nop", wq / s_w[:, None], x32.astype(np.float64)) + bias[None, :, None]
        if ly.geti(9) == 1:  # fused ReLU
            int8_sim, float_sim = np.maximum(int8_sim, 0), np.maximum(float_sim, 0)

        scale = np.abs(y).max()
        err_int8 = np.abs(y - int8_sim)
        err_float = np.abs(y - float_sim)
        # ncnn equals the integer simulation up to float32 rounding on (virtually) every element
        assert np.quantile(err_int8, 0.999) <= 1e-5 * scale, (name, np.quantile(err_int8, 0.999), scale)
        # ... and is far from what any float kernel on the same weights would give
        assert err_float.mean() >= 1e-4 * scale, name
        assert err_float.mean() >= 100 * err_int8.mean(), (name, err_float.mean(), err_int8.mean())


def test_int8_file_refused_without_int8(quantized):
    if not _has_pnnx():
        pytest.skip("pnnx not installed")
    conv, info = quantized("RFB")
    with pytest.raises(ZooError, match="int8=True"):
        _load(info["param"], info["bin"])


def test_int8_format_on_a_tiny_hand_made_net(tmp_path):
    """Our writer's bytes load in ncnn and match the documented layout, without pnnx."""
    rng = np.random.default_rng(0)
    c_in, c_out = 8, 4
    w = rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32)
    dw = rng.normal(size=(c_out, 1, 3, 3)).astype(np.float32)
    b = rng.normal(size=c_out).astype(np.float32)
    param = tmp_path / "t.param"
    binf = tmp_path / "t.bin"
    param.write_text(
        "7767517\n3 3\n"
        "Input            in0  0 1 in0 0=16 1=12 2=8\n"
        f"Convolution      c1   1 1 in0 a 0={c_out} 1=3 4=1 5=1 6={w.size} 9=1\n"
        f"ConvolutionDepthWise c2 1 1 a out0 0={c_out} 1=3 4=1 5=0 6={dw.size} 7={c_out}\n")
    binf.write_bytes(b"\0\0\0\0" + w.tobytes() + b.tobytes() + b"\0\0\0\0" + dw.tobytes())
    x = rng.normal(size=(3, c_in, 12, 16)).astype(np.float32)
    info = quantize_int8(param, binf, x, tmp_path / "q.param", tmp_path / "q.bin", skip_layers=())
    assert info["int8_layers"] == ["c1", "c2"]
    qbin = (tmp_path / "q.bin").read_bytes()
    # c1: int8 tag, 288 weights (already 4-aligned), 4 bias, 4 weight scales, 1 input scale
    assert qbin[:4] == (0x000D4B38).to_bytes(4, "little")
    off = 4 + w.size
    assert np.array_equal(np.frombuffer(qbin[off:off + 16], "<f4"), b)
    wsc = np.frombuffer(qbin[off + 16:off + 32], "<f4")
    assert np.allclose(wsc, 127 / np.abs(w.reshape(c_out, -1)).max(1), rtol=1e-6)
    assert "8=2" in (tmp_path / "q.param").read_text().splitlines()[3]
    assert "8=1" in (tmp_path / "q.param").read_text().splitlines()[4]
    with NcnnNet(param, binf, input_blob="in0") as net:
        ref = net.infer(x)["out0"]
    with NcnnNet(info["param"], info["bin"], int8=True, input_blob="in0") as net:
        got = net.infer(x)["out0"]
    assert got.shape == ref.shape == (3, c_out, 12, 16)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    assert 0 < rel < 0.05, rel
