"""Tests of zoo.exporters.tflite: NHWC TensorFlow graphs -> .tflite, LiteRT runner.

Real checkpoints, real reference ONNX files (onnxruntime), real LiteRT.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="tensorflow is not installed")
pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to read the checkpoints")
cv2 = pytest.importorskip("cv2", reason="opencv is not installed")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from zoo.exporters.tflite.convert import convert, describe  # noqa: E402
from zoo.exporters.tflite.network import build_module  # noqa: E402
from zoo.exporters.tflite.runner import TfliteNet  # noqa: E402
from zoo.exporters.tflite.saved_model import save_saved_model  # noqa: E402
from zoo.core.errors import ZooError  # noqa: E402
from zoo.core.model.priors import generate_priors  # noqa: E402

SHARED = Path(os.environ.get("ZOO_SHARED", REPO.parent / "shared"))
CKPT = SHARED / "upstream" / "checkpoints"
REF_ONNX = SHARED / "upstream" / "reference" / "onnx"
IMAGES = sorted((SHARED / "images").glob("*.jpg"))

# missing shared material: conftest.py skips these tests (fails them under CI)


# ----------------------------------------------------------------- helpers


def preprocess(path: Path, width: int, height: int) -> np.ndarray:
    img = cv2.imread(str(path))
    img = cv2.cvtColor(cv2.resize(img, (width, height)), cv2.COLOR_BGR2RGB)
    return ((img.astype(np.float32) - 127.0) / 128.0)[None]


_images_cache: dict = {}


def images(width: int, height: int) -> np.ndarray:
    if (width, height) not in _images_cache:
        _images_cache[(width, height)] = np.concatenate([preprocess(p, width, height) for p in IMAGES])
    return _images_cache[(width, height)]


_sd_cache: dict = {}


def state_dict(name: str) -> dict[str, np.ndarray]:
    if name not in _sd_cache:
        sd = torch.load(CKPT / f"{name}.pth", map_location="cpu", weights_only=True)
        _sd_cache[name] = {k: v.numpy() for k, v in sd.items()}
    return dict(_sd_cache[name])


def onnx_outputs(name: str, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(REF_ONNX / name), so, providers=["CPUExecutionProvider"])
    outs = [sess.run(["scores", "boxes"], {"input": x_nhwc[i:i + 1].transpose(0, 3, 1, 2)}) for i in range(len(x_nhwc))]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def decode(raw: np.ndarray, priors: np.ndarray) -> np.ndarray:
    c = raw[:, :2] * 0.1 * priors[:, 2:] + priors[:, :2]
    s = np.exp(raw[:, 2:] * 0.2) * priors[:, 2:]
    return np.concatenate([c - s / 2, c + s / 2], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-12)


def detect(scores: np.ndarray, boxes: np.ndarray, thr: float = 0.7, iou: float = 0.3, cand: int = 200) -> np.ndarray:
    """Hard NMS per non-background class on one image's decoded boxes; (M, 4) kept boxes."""
    kept = []
    for k in range(1, scores.shape[1]):
        m = scores[:, k] > thr
        s, b = scores[m, k], boxes[m]
        order = np.argsort(-s, kind="stable")[:cand]
        s, b = s[order], b[order]
        while len(s):
            kept.append(b[0])
            rest = iou_matrix(b[:1], b[1:])[0] <= iou
            s, b = s[1:][rest], b[1:][rest]
    return np.array(kept, dtype=np.float32).reshape(-1, 4)


def match_count(ref: np.ndarray, test: np.ndarray, thr: float = 0.5) -> int:
    """Greedy one-to-one matches at IoU >= thr."""
    if not len(ref) or not len(test):
        return 0
    m = iou_matrix(ref, test)
    used: set[int] = set()
    hits = 0
    for i in np.argsort(-m.max(axis=1), kind="stable"):
        for j in np.argsort(-m[i], kind="stable"):
            if m[i, j] < thr:
                break
            if j not in used:
                used.add(int(j))
                hits += 1
                break
    return hits


def detections(outs: dict, width: int, height: int) -> list[np.ndarray]:
    pr = generate_priors(width, height)
    return [detect(outs["scores"][i], decode(outs["boxes"][i], pr)) for i in range(len(outs["scores"]))]


def op_counts(path: Path) -> collections.Counter:
    from ai_edge_litert.interpreter import Interpreter

    return collections.Counter(op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details())


def with_extra_classes(sd: dict[str, np.ndarray], extra: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A randomly perturbed (2 + extra)-class state dict made from a 2-class one."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in sd.items():
        v = np.asarray(v)
        if v.dtype.kind == "f" and v.ndim >= 1 and "running_var" not in k:
            v = (v + 0.02 * v.std() * rng.standard_normal(v.shape)).astype(np.float32)
        out[k] = v
    anchors = (3, 2, 2, 3)
    for lvl, a in enumerate(anchors):
        prefix = f"classification_headers.{lvl}" + (".2" if lvl < 3 else "")
        w, b = out[prefix + ".weight"], out[prefix + ".bias"]
        w = w.reshape(a, 2, *w.shape[1:])
        b = b.reshape(a, 2)
        new_w = w[:, 1:2] + 0.5 * w.std() * rng.standard_normal((a, extra, *w.shape[2:]))
        new_b = b[:, 1:2] + 0.5 * rng.standard_normal((a, extra))
        out[prefix + ".weight"] = np.concatenate([w, new_w], axis=1).reshape(a * (2 + extra), *w.shape[2:]).astype(np.float32)
        out[prefix + ".bias"] = np.concatenate([b, new_b], axis=1).reshape(-1).astype(np.float32)
    return out


def torch_reference(sd: dict[str, np.ndarray], arch: str, k: int, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent NCHW functional PyTorch forward (BN unfolded, PyTorch permute+reshape head)."""
    import torch.nn.functional as F

    t = {n: torch.as_tensor(np.asarray(v)) for n, v in sd.items()}

    def conv(x, p, stride=1, pad=0, dil=1, groups=1, bias=False):
        return F.conv2d(x, t[p + ".weight"], t[p + ".bias"] if bias else None, stride, pad, dil, groups)

    def bn(x, p):
        return F.batch_norm(x, t[p + ".running_mean"], t[p + ".running_var"], t[p + ".weight"], t[p + ".bias"],
                            False, 0.0, 1e-5)

    def dw(x, i, s):
        x = F.relu(bn(conv(x, f"base_net.{i}.0", s, 1, groups=x.shape[1]), f"base_net.{i}.1"))
        return F.relu(bn(conv(x, f"base_net.{i}.3"), f"base_net.{i}.4"))

    def basic(x, p, pad=0, dil=1, relu=False):
        y = bn(conv(x, p + ".conv", 1, pad, dil), p + ".bn")
        return F.relu(y) if relu else y

    def rfb(x):
        p = "base_net.7"
        b0 = basic(basic(basic(x, p + ".branch0.0"), p + ".branch0.1", 1, 1, True), p + ".branch0.2", 2, 2)
        b1 = basic(basic(basic(x, p + ".branch1.0"), p + ".branch1.1", 1, 1, True), p + ".branch1.2", 3, 3)
        b2 = basic(x, p + ".branch2.0")
        b2 = basic(basic(b2, p + ".branch2.1", 1, 1, True), p + ".branch2.2", 1, 1, True)
        b2 = basic(b2, p + ".branch2.3", 5, 5)
        return F.relu(basic(torch.cat([b0, b1, b2], 1), p + ".ConvLinear") + basic(x, p + ".shortcut"))

    with torch.no_grad():
        x = torch.as_tensor(x_nhwc.transpose(0, 3, 1, 2).copy())
        x = F.relu(bn(conv(x, "base_net.0.0", 2, 1), "base_net.0.1"))
        feats = []
        for i in range(1, 13):
            x = rfb(x) if (i == 7 and arch == "rfb") else dw(x, i, 2 if i in (2, 4, 8, 11) else 1)
            if i in (7, 10, 12):
                feats.append(x)
        e = F.relu(conv(x, "extras.0.0", bias=True))
        e = F.relu(conv(e, "extras.0.2.0", 2, 1, groups=e.shape[1], bias=True))
        feats.append(F.relu(conv(e, "extras.0.2.2", bias=True)))

        def head(f, name, lvl, n):
            if lvl < 3:
                y = F.relu(conv(f, f"{name}.{lvl}.0", 1, 1, groups=f.shape[1], bias=True))
                y = conv(y, f"{name}.{lvl}.2", bias=True)
            else:
                y = conv(f, f"{name}.{lvl}", 1, 1, bias=True)
            return y.permute(0, 2, 3, 1).contiguous().view(y.shape[0], -1, n)

        conf = torch.cat([head(f, "classification_headers", lv, k) for lv, f in enumerate(feats)], 1)
        loc = torch.cat([head(f, "regression_headers", lv, 4) for lv, f in enumerate(feats)], 1)
        return F.softmax(conf, dim=2).numpy(), loc.numpy()


def build_tflite(tmp: Path, sd: dict, arch: str, k: int, w: int, h: int, head: str, **conv_kw) -> Path:
    sm = tmp / f"sm_{arch}_{k}_{w}x{h}_{head}"
    save_saved_model(build_module(sd, arch, k, w, h, head), sm)
    out = tmp / f"{arch}_{k}_{w}x{h}_{head}_{conv_kw.get('precision', 'fp32')}.tflite"
    conv_kw.setdefault("precision", "fp32")
    convert(sm, out, **conv_kw)
    return out


def run(path: Path, x: np.ndarray, threads: int = 1) -> dict:
    with TfliteNet(path, threads=threads) as net:
        return net.infer(x)


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="module")
def rfb320(work) -> dict:
    """RFB-320 raw head: SavedModel, fp32/fp16/int8 (both IO flavours), calibrated on mirrored images."""
    sm = work / "sm_rfb320_raw"
    save_saved_model(build_module(state_dict("version-RFB-320"), "rfb", 2, 320, 240, "raw"), sm)
    calib = images(320, 240)[:, :, ::-1, :].copy()  # mirrored: not the evaluation inputs themselves
    np.save(work / "calib.npy", calib)
    files, infos = {}, {}
    for tag, kw in {"fp32": dict(precision="fp32"), "fp16": dict(precision="fp16"),
                    "int8": dict(precision="int8", calib=calib),
                    "int8io": dict(precision="int8", calib=calib, int8_io=True)}.items():
        files[tag] = work / f"rfb320_{tag}.tflite"
        infos[tag] = convert(sm, files[tag], **kw)
    return {"sm": sm, "files": files, "infos": infos}


# ----------------------------------------------------------------- parity


@pytest.mark.parametrize("arch,name", [("rfb", "RFB"), ("slim", "slim")])
def test_raw_fp32_matches_reference_onnx(work, rfb320, arch, name):
    path = rfb320["files"]["fp32"] if arch == "rfb" else build_tflite(
        work, state_dict(f"version-{name}-320"), arch, 2, 320, 240, "raw")
    x = images(320, 240)
    ours = run(path, x)
    ref_s, ref_b = onnx_outputs(f"version-{name}-320_simplified.onnx", x)
    assert ours["scores"].shape == ref_s.shape == (len(x), 4420, 2)
    np.testing.assert_allclose(ours["scores"], ref_s, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours["boxes"], ref_b, rtol=0, atol=1e-4)
    # NHWC input, no layout shuffling in the graph.
    info = describe(path)
    assert info["inputs"][0]["shape"] == [1, 240, 320, 3]
    assert [o["name"] for o in info["outputs"]] == ["scores", "boxes"]
    ops = op_counts(path)
    assert ops["TRANSPOSE"] <= 4, ops


@pytest.mark.parametrize("name,w,h", [("RFB-320", 320, 240), ("RFB-640", 640, 480)])
def test_decoded_fp32_matches_reference_onnx(work, name, w, h):
    path = build_tflite(work, state_dict(f"version-{name}"), "rfb", 2, w, h, "decoded")
    x = images(w, h)
    ours = run(path, x)
    ref_s, ref_b = onnx_outputs(f"version-{name}.onnx", x)
    assert ours["boxes"].shape == ref_b.shape
    np.testing.assert_allclose(ours["boxes"], ref_b, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours["scores"], ref_s, rtol=0, atol=1e-4)


@pytest.mark.parametrize("k,w,h", [(3, 160, 120), (4, 128, 96)])
def test_more_classes_match_torch_reference(work, k, w, h):
    """K from the weights; head channel order = PyTorch permute+reshape; K == 4 outputs told apart by name."""
    sd = with_extra_classes(state_dict("version-RFB-320"), k - 2, seed=k)
    path = build_tflite(work, sd, "rfb", k, w, h, "raw")
    x = images(w, h)[:4]
    ours = run(path, x)
    ref_s, ref_b = torch_reference(sd, "rfb", k, x)
    assert ours["scores"].shape == ref_s.shape == (4, ref_b.shape[1], k)
    np.testing.assert_allclose(ours["scores"], ref_s, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours["boxes"], ref_b, rtol=0, atol=1e-4)
    # the extra classes do get probability mass (the test is not vacuous)
    assert ref_s[..., 2:].max() > 0.1


def test_torch_reference_agrees_with_onnx():
    x = images(320, 240)[:2]
    s, b = torch_reference(state_dict("version-slim-320"), "slim", 2, x)
    ref_s, ref_b = onnx_outputs("version-slim-320_simplified.onnx", x)
    np.testing.assert_allclose(s, ref_s, atol=1e-4)
    np.testing.assert_allclose(b, ref_b, atol=1e-4)


def test_fp16_close_to_fp32(rfb320):
    x = images(320, 240)
    f32, f16 = run(rfb320["files"]["fp32"], x), run(rfb320["files"]["fp16"], x)
    np.testing.assert_allclose(f16["scores"], f32["scores"], rtol=0, atol=2e-2)
    np.testing.assert_allclose(f16["boxes"], f32["boxes"], rtol=0, atol=0.25)  # raw offsets
    pr = generate_priors(320, 240)
    for i in range(len(x)):  # decoded corners, image units
        np.testing.assert_allclose(decode(f16["boxes"][i], pr), decode(f32["boxes"][i], pr), rtol=0, atol=5e-3)
    assert rfb320["infos"]["fp16"]["size"] <= 0.55 * rfb320["infos"]["fp32"]["size"]


@pytest.mark.parametrize("tag", ["int8", "int8io"])
def test_int8_keeps_detections(rfb320, tag):
    x = images(320, 240)
    ref = detections(run(rfb320["files"]["fp32"], x), 320, 240)
    got = detections(run(rfb320["files"][tag], x), 320, 240)
    n_ref, n_got = sum(map(len, ref)), sum(map(len, got))
    matched = sum(match_count(r, g) for r, g in zip(ref, got))
    assert n_ref > 100
    assert matched >= 0.97 * n_ref, (matched, n_ref)
    assert n_got - matched <= 0.03 * n_ref, (n_got, matched, n_ref)
    infos = rfb320["infos"]
    assert infos[tag]["size"] <= 0.45 * infos["fp32"]["size"]


def test_int8_io_params(rfb320):
    io = rfb320["infos"]["int8io"]
    assert io["inputs"][0]["dtype"] == "int8" and io["inputs"][0]["scale"] > 0
    assert [o["name"] for o in io["outputs"]] == ["scores", "boxes"]
    assert all(o["dtype"] == "int8" and o["scale"] > 0 for o in io["outputs"])
    flt = rfb320["infos"]["int8"]
    assert flt["inputs"][0]["dtype"] == "float32"
    assert all(o["dtype"] == "float32" for o in flt["outputs"])
    assert op_counts(rfb320["files"]["int8"])["TRANSPOSE"] == 0


# ----------------------------------------------------------------- selective int8 (layers kept float)

#: a stem conv, a depthwise, an RFB branch conv and a head conv (the kinds the sensitivity analysis picks)
KEEP = ["base_net.0.0", "base_net.1.0", "base_net.7.branch0.1.conv", "regression_headers.0.2"]


def conv_weight_dtypes(path: Path) -> dict[str, str]:
    """PyTorch module path (the name scope that starts the op's output name) -> weight dtype, per convolution."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    t = {d["index"]: d for d in it.get_tensor_details()}
    out = {}
    for op in it._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            module = t[op["outputs"][0]]["name"].split("/")[0]
            assert module not in out, module
            out[module] = np.dtype(t[op["inputs"][1]]["dtype"]).name
    return out


def torch_conv_modules(arch: str) -> set[str]:
    from zoo.core.model.nets import UltraFace

    net = UltraFace(arch, 2, 320, 240, head="raw")
    return {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}


@pytest.mark.parametrize("int8_io", [False, True], ids=["int8", "int8io"])
def test_int8_keeps_the_named_convolutions_float(work, rfb320, tmp_path, int8_io):
    from zoo.exporters.tflite.network import conv_module

    out = tmp_path / "sel.tflite"
    info = convert(rfb320["sm"], out, precision="int8", calib=np.load(work / "calib.npy"), int8_io=int8_io,
                   float_modules=KEEP)
    dtypes = conv_weight_dtypes(out)
    assert set(dtypes) == torch_conv_modules("rfb")  # every convolution named by its PyTorch module
    assert {m for m, d in dtypes.items() if d == "float32"} == set(KEEP)
    assert {d for m, d in dtypes.items() if m not in KEEP} == {"int8"}
    assert sorted(conv_module(n) for n in info["float_ops"]) == sorted(KEEP)
    io_dtype = "int8" if int8_io else "float32"
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == [io_dtype] * 3
    if int8_io:
        assert all(t["scale"] > 0 for t in info["inputs"] + info["outputs"])
    # still a detector, and still small
    x = images(320, 240)
    ref = detections(run(rfb320["files"]["fp32"], x), 320, 240)
    got = detections(run(out, x), 320, 240)
    n_ref = sum(map(len, ref))
    matched = sum(match_count(r, g) for r, g in zip(ref, got))
    assert matched >= 0.97 * n_ref and sum(map(len, got)) - matched <= 0.03 * n_ref, (matched, n_ref)
    assert info["size"] <= 0.45 * rfb320["infos"]["fp32"]["size"]
    if int8_io:  # deterministic: the same inputs give the same bytes
        again = tmp_path / "again.tflite"
        convert(rfb320["sm"], again, precision="int8", calib=np.load(work / "calib.npy"), int8_io=True,
                float_modules=list(reversed(KEEP)))
        assert again.read_bytes() == out.read_bytes()


@pytest.mark.filterwarnings(r"ignore:(?s).*tf\.lite\.Interpreter is deprecated:UserWarning")  # TF's calibrator
def test_int8_with_nothing_kept_float_is_the_plain_full_integer_conversion(work, rfb320):
    """An empty float_modules changes nothing: TFLiteConverter's own full-integer int8, byte for byte."""
    calib = np.load(work / "calib.npy")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(rfb320["sm"]), signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ({"input": calib[i:i + 1]} for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    assert bytes(converter.convert()) == rfb320["files"]["int8io"].read_bytes()
    assert rfb320["infos"]["int8io"]["float_ops"] == [] and rfb320["infos"]["int8"]["float_ops"] == []
    assert set(conv_weight_dtypes(rfb320["files"]["int8"]).values()) == {"int8"}


def test_int8_float_modules_errors(work, rfb320, tmp_path):
    with pytest.raises(ZooError, match="requires precision='int8'"):
        convert(rfb320["sm"], tmp_path / "x.tflite", precision="fp32", float_modules=["base_net.0.0"])
    with pytest.raises(ZooError, match="base_net.99.0"):
        convert(rfb320["sm"], tmp_path / "x.tflite", precision="int8", calib=np.load(work / "calib.npy")[:2],
                float_modules=["base_net.99.0"])
    assert not (tmp_path / "x.tflite").exists()


# ----------------------------------------------------------------- determinism and offline

_GUARD = textwrap.dedent("""
    import os, sys
    def _hook(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
            sys.stderr.write(f"NETWORK ACCESS: {event} {args!r}\\n")
            sys.stderr.flush()
            os._exit(97)
    sys.addaudithook(_hook)
""")


def _run_guarded(body: str, tmp: Path) -> subprocess.CompletedProcess:
    script = tmp / "guarded.py"
    script.write_text(_GUARD + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(script)], cwd=str(REPO), env=env, capture_output=True,
                          text=True, timeout=120)


def test_network_guard_catches_a_connect(tmp_path):
    r = _run_guarded("""
        import socket
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", 9))
        except OSError:
            pass
        print("not caught")
    """, tmp_path)
    assert r.returncode == 97 and "socket.connect" in r.stderr, (r.returncode, r.stdout, r.stderr[-2000:])


def test_conversion_offline_and_deterministic(work, rfb320, tmp_path):
    """A fresh process, network blocked, rebuilds from the checkpoint: byte-identical fp32 and int8 files."""
    out = tmp_path / "sub"
    np.savez(tmp_path / "sd.npz", **state_dict("version-RFB-320"))
    r = _run_guarded(f"""
        import numpy as np
        from zoo.exporters.tflite.network import build_module
        from zoo.exporters.tflite.saved_model import save_saved_model
        from zoo.exporters.tflite.convert import convert
        with np.load({str(tmp_path / "sd.npz")!r}) as z:
            sd = {{k: z[k] for k in z.files}}
        out = {str(out)!r}
        save_saved_model(build_module(sd, "rfb", 2, 320, 240, "raw"), out + "/sm")
        convert(out + "/sm", out + "/fp32.tflite", precision="fp32")
        convert(out + "/sm", out + "/int8io.tflite", precision="int8",
                calib=np.load({str(work / "calib.npy")!r}), int8_io=True)
        import shutil
        from pathlib import Path
        from zoo.exporters.tflite.saved_model import canonical_function_names, stable_fingerprint
        shutil.copytree(out + "/sm", out + "/canonical")  # the saved_model target's artifact
        canonical_function_names(Path(out + "/canonical"))
        stable_fingerprint(Path(out + "/canonical"))
        print("done")
    """, tmp_path)
    assert r.returncode == 0 and "done" in r.stdout, (r.returncode, r.stderr[-3000:])
    for tag in ("fp32", "int8io"):
        assert (out / f"{tag}.tflite").read_bytes() == rfb320["files"][tag].read_bytes(), tag
    # the SavedModel saved here, after this process traced other functions (TF numbers them with a
    # process-wide counter), is byte-identical to the fresh process's once its functions are renumbered
    from zoo.exporters.tflite.saved_model import canonical_function_names, stable_fingerprint

    here = tmp_path / "here"
    save_saved_model(build_module(state_dict("version-RFB-320"), "rfb", 2, 320, 240, "raw"), here)
    assert (here / "saved_model.pb").read_bytes() != (out / "sm" / "saved_model.pb").read_bytes()  # other numbers
    canonical_function_names(here)
    stable_fingerprint(here)
    for name in ("saved_model.pb", "fingerprint.pb"):
        assert (here / name).read_bytes() == (out / "canonical" / name).read_bytes(), name
    from zoo.exporters.tflite.runner import SavedModelNet

    with SavedModelNet(here) as a, SavedModelNet(out / "sm") as b:
        got, want = a.infer(images(320, 240)[:1]), b.infer(images(320, 240)[:1])
    assert all(np.array_equal(got[k], want[k]) for k in want)  # the same graph: the same outputs
    # and in-process, same SavedModel twice
    again = tmp_path / "again.tflite"
    convert(rfb320["sm"], again, precision="fp16")
    assert again.read_bytes() == rfb320["files"]["fp16"].read_bytes()


# ----------------------------------------------------------------- validation and runner errors


def test_state_dict_validation():
    sd = state_dict("version-slim-320")
    missing = dict(sd)
    del missing["regression_headers.2.2.bias"]
    with pytest.raises(ZooError, match=r"missing key 'regression_headers\.2\.2\.bias'"):
        build_module(missing, "slim", 2, 320, 240, "raw")
    extra = dict(sd, **{"base_net.13.0.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(ZooError, match=r"unexpected key 'base_net\.13\.0\.weight'"):
        build_module(extra, "slim", 2, 320, 240, "raw")
    bad = dict(sd, **{"base_net.5.3.weight": np.zeros((64, 32, 1, 1), np.float32)})
    with pytest.raises(ZooError, match=r"'base_net\.5\.3\.weight' has shape"):
        build_module(bad, "slim", 2, 320, 240, "raw")
    with pytest.raises(ZooError, match=r"classification_headers\.0\.2\.weight"):
        build_module(sd, "slim", 3, 320, 240, "raw")  # K does not match the weights
    with pytest.raises(ZooError, match="missing key 'base_net.7.0.weight'"):
        build_module(state_dict("version-RFB-320"), "slim", 2, 320, 240, "raw")
    with pytest.raises(ZooError, match="missing key 'base_net.7.branch0.0.conv.weight'"):
        build_module(sd, "rfb", 2, 320, 240, "raw")
    no_nbt = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    build_module(no_nbt, "slim", 2, 320, 240, "raw")  # optional keys
    for args in [("mobilenet", 2, 320, 240, "raw"), ("slim", 2, 320, 240, "nms"), ("slim", 2, 0, 240, "raw")]:
        with pytest.raises(ZooError):
            build_module(sd, *args)


def test_runner_and_convert_errors(rfb320, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ZooError):
        with TfliteNet(junk):
            pass
    with pytest.raises(ZooError):
        with TfliteNet(tmp_path / "missing.tflite"):
            pass
    with TfliteNet(rfb320["files"]["fp32"]) as net:
        with pytest.raises(ZooError, match="input must have shape"):
            net.infer(np.zeros((1, 3, 240, 320), np.float32))
        one = net.infer(images(320, 240)[:1])
        assert one["scores"].shape == (1, 4420, 2) and one["boxes"].shape == (1, 4420, 4)
    with pytest.raises(ZooError, match="calib"):
        convert(rfb320["sm"], tmp_path / "x.tflite", precision="int8")
    with pytest.raises(ZooError, match="calib"):
        convert(rfb320["sm"], tmp_path / "x.tflite", precision="int8", calib=np.zeros((2, 120, 160, 3), np.float32))
    with pytest.raises(ZooError, match="precision"):
        convert(rfb320["sm"], tmp_path / "x.tflite", precision="int4")
    with pytest.raises(ZooError, match="SavedModel"):
        convert(tmp_path, tmp_path / "x.tflite", precision="fp32")
    assert not (tmp_path / "x.tflite").exists()


def test_saved_model_replaced_atomically(tmp_path):
    m = build_module(state_dict("version-slim-320"), "slim", 2, 128, 96, "raw")
    out = tmp_path / "sm"
    save_saved_model(m, out)
    save_saved_model(m, out)  # replaces the existing folder
    assert (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]
