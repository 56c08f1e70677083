"""TFLite toolkit: NHWC-native UltraFace graphs built directly in TensorFlow.

The network is rebuilt from the checkpoint's ``state_dict`` (original key
names) with ``tf.nn`` ops in NHWC layout, BatchNorm folded into the conv
weights and biases, inside a ``tf.Module`` whose ``serve`` ``tf.function`` has
a fixed ``(1, H, W, 3)`` float32 input signature.  No Keras, no ONNX detour:

* :func:`build_module` -- state_dict -> ``tf.Module`` (raw or decoded head);
* :func:`save_saved_model` -- the TF SavedModel the conversion passes through;
* :func:`convert` -- SavedModel -> ``.tflite`` (fp32, fp16 weights, int8);
* :class:`TfliteNet` -- a small runner on ``ai_edge_litert``.

TensorFlow is imported lazily inside the functions that need it, so the
runner can be used where only ``ai-edge-litert`` is installed.  Nothing here
keeps global state or touches the network.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from zoo.errors import ZooError

ARCHS = ("slim", "rfb")
HEADS = ("raw", "decoded")
PRECISIONS = ("fp32", "fp16", "int8")
#: Anchors per detection level (fixed by the family's prior layout).
ANCHORS = (3, 2, 2, 3)
BN_EPS = 1e-5
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
INPUT_NAME = "input"
SIGNATURE_KEY = "serving_default"


# --------------------------------------------------------------------------
# Checkpoint reading: a numpy "plan" of folded layers, validated strictly.
# --------------------------------------------------------------------------


class _Weights:
    """Reads tensors by original key name and remembers which were used."""

    def __init__(self, state_dict: Mapping[str, Any]):
        if not isinstance(state_dict, Mapping):
            raise ZooError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
        self._sd: dict[str, np.ndarray] = {}
        for k, v in state_dict.items():
            try:
                self._sd[str(k)] = np.asarray(v)
            except Exception as exc:  # e.g. a tensor that cannot become an array
                raise ZooError(f"checkpoint key {k!r} is not an array: {exc}") from None
        self._used: set[str] = set()
        self._optional: set[str] = set()

    def get(self, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
        if key not in self._sd:
            raise ZooError(f"checkpoint is missing key {key!r}")
        arr = self._sd[key]
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise ZooError(f"checkpoint key {key!r} has shape {tuple(arr.shape)}, expected {want}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ZooError(f"checkpoint key {key!r} has dtype {arr.dtype}, expected a float type")
        if not np.all(np.isfinite(arr)):
            raise ZooError(f"checkpoint key {key!r} contains non-finite values")
        self._used.add(key)
        return arr.astype(np.float64)

    def allow(self, key: str) -> None:
        """A key that may be present (and is then ignored), e.g. num_batches_tracked."""
        self._optional.add(key)

    def finish(self) -> None:
        extra = sorted(set(self._sd) - self._used - self._optional)
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise ZooError(f"checkpoint has unexpected key {extra[0]!r}{more}")


@dataclass
class _Conv:
    """One folded convolution, weights already in TF layout."""

    kernel: np.ndarray  # conv: (kh, kw, cin, cout); depthwise: (kh, kw, c, 1)
    bias: np.ndarray  # (cout,)
    depthwise: bool
    stride: int
    pad: int
    dilation: int
    relu: bool

    @property
    def cout(self) -> int:
        return int(self.kernel.shape[2] if self.depthwise else self.kernel.shape[3])


def _conv(w: _Weights, prefix: str, cin: int, *, k: int, stride: int = 1, pad: int = 0,
          dilation: int = 1, depthwise: bool = False, bias: bool = False, bn: str | None = None,
          relu: bool = False, cout: int | None = None) -> _Conv:
    """Reads ``prefix.weight`` (+ ``prefix.bias``) and optionally folds BN at ``bn``."""
    if depthwise:
        weight = w.get(f"{prefix}.weight", (cin, 1, k, k))
        n_out = cin
    else:
        weight = w.get(f"{prefix}.weight", (cout, cin, k, k))
        n_out = int(weight.shape[0])
    b = w.get(f"{prefix}.bias", (n_out,)) if bias else np.zeros(n_out, dtype=np.float64)
    if bn is not None:
        gamma = w.get(f"{bn}.weight", (n_out,))
        beta = w.get(f"{bn}.bias", (n_out,))
        mean = w.get(f"{bn}.running_mean", (n_out,))
        var = w.get(f"{bn}.running_var", (n_out,))
        w.allow(f"{bn}.num_batches_tracked")
        if np.any(var < 0):
            raise ZooError(f"checkpoint key {bn + '.running_var'!r} has negative values")
        scale = gamma / np.sqrt(var + BN_EPS)
        weight = weight * scale[:, None, None, None]
        b = (b - mean) * scale + beta
    if depthwise:  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        kernel = weight.transpose(2, 3, 0, 1)
    else:  # (O, I, kh, kw) -> (kh, kw, I, O)
        kernel = weight.transpose(2, 3, 1, 0)
    return _Conv(kernel=kernel.astype(np.float32), bias=b.astype(np.float32), depthwise=depthwise,
                 stride=stride, pad=pad, dilation=dilation, relu=relu)


@dataclass
class _Seq:
    convs: list[_Conv]

    @property
    def cout(self) -> int:
        return self.convs[-1].cout


@dataclass
class _Rfb:
    branches: list[list[_Conv]]
    linear: _Conv
    shortcut: _Conv
    scale: float = 1.0

    @property
    def cout(self) -> int:
        return self.linear.cout


@dataclass
class _Plan:
    arch: str
    num_classes: int
    backbone: list[Any] = field(default_factory=list)  # _Seq | _Rfb, 13 layers
    extras: list[_Conv] = field(default_factory=list)
    cls_heads: list[list[_Conv]] = field(default_factory=list)
    reg_heads: list[list[_Conv]] = field(default_factory=list)


def _dw_layer(w: _Weights, i: int, cin: int, stride: int) -> _Seq:
    p = f"base_net.{i}"
    dw = _conv(w, f"{p}.0", cin, k=3, stride=stride, pad=1, depthwise=True, bn=f"{p}.1", relu=True)
    pw = _conv(w, f"{p}.3", cin, k=1, bn=f"{p}.4", relu=True)
    return _Seq([dw, pw])


def _rfb_layer(w: _Weights, i: int, cin: int) -> _Rfb:
    p = f"base_net.{i}"
    # (kernel, pad, dilation, relu) of each BasicConv, per branch
    spec = [
        [(1, 0, 1, False), (3, 1, 1, True), (3, 2, 2, False)],
        [(1, 0, 1, False), (3, 1, 1, True), (3, 3, 3, False)],
        [(1, 0, 1, False), (3, 1, 1, True), (3, 1, 1, True), (3, 5, 5, False)],
    ]
    branches: list[list[_Conv]] = []
    cat = 0
    for b, layers in enumerate(spec):
        c = cin
        convs = []
        for j, (k, pad, dil, relu) in enumerate(layers):
            q = f"{p}.branch{b}.{j}"
            cv = _conv(w, f"{q}.conv", c, k=k, pad=pad, dilation=dil, bn=f"{q}.bn", relu=relu)
            convs.append(cv)
            c = cv.cout
        branches.append(convs)
        cat += c
    linear = _conv(w, f"{p}.ConvLinear.conv", cat, k=1, bn=f"{p}.ConvLinear.bn")
    shortcut = _conv(w, f"{p}.shortcut.conv", cin, k=1, bn=f"{p}.shortcut.bn", cout=linear.cout)
    return _Rfb(branches=branches, linear=linear, shortcut=shortcut)


def _head(w: _Weights, prefix: str, level: int, cin: int, per_anchor: int) -> list[_Conv]:
    cout = ANCHORS[level] * per_anchor
    if level < 3:  # SepConv: depthwise 3x3 (bias) + ReLU + 1x1 (bias)
        dw = _conv(w, f"{prefix}.{level}.0", cin, k=3, pad=1, depthwise=True, bias=True, relu=True)
        pw = _conv(w, f"{prefix}.{level}.2", cin, k=1, bias=True, cout=cout)
        return [dw, pw]
    return [_conv(w, f"{prefix}.{level}", cin, k=3, pad=1, bias=True, cout=cout)]


def _make_plan(state_dict: Mapping[str, Any], arch: str, num_classes: int) -> _Plan:
    w = _Weights(state_dict)
    plan = _Plan(arch=arch, num_classes=num_classes)
    first = _conv(w, "base_net.0.0", 3, k=3, stride=2, pad=1, bn="base_net.0.1", relu=True)
    plan.backbone.append(_Seq([first]))
    c = first.cout
    strides = {2: 2, 4: 2, 8: 2, 11: 2}
    for i in range(1, 13):
        if i == 7 and arch == "rfb":
            layer = _rfb_layer(w, i, c)
        else:
            layer = _dw_layer(w, i, c, strides.get(i, 1))
        plan.backbone.append(layer)
        c = layer.cout
    # extras.0: Conv1x1(bias)+ReLU, SepConv(dw3x3 s2 bias + ReLU, 1x1 bias) + ReLU
    e0 = _conv(w, "extras.0.0", c, k=1, bias=True, relu=True)
    e1 = _conv(w, "extras.0.2.0", e0.cout, k=3, stride=2, pad=1, depthwise=True, bias=True, relu=True)
    e2 = _conv(w, "extras.0.2.2", e1.cout, k=1, bias=True, relu=True)
    plan.extras = [e0, e1, e2]
    level_channels = [plan.backbone[7].cout, plan.backbone[10].cout, plan.backbone[12].cout, e2.cout]
    for lvl, cin in enumerate(level_channels):
        plan.cls_heads.append(_head(w, "classification_headers", lvl, cin, num_classes))
        plan.reg_heads.append(_head(w, "regression_headers", lvl, cin, 4))
    w.finish()
    return plan


# --------------------------------------------------------------------------
# TensorFlow graph
# --------------------------------------------------------------------------


def _apply_conv(tf: Any, x: Any, cv: _Conv) -> Any:
    """Conv in NHWC reproducing PyTorch's symmetric padding exactly."""
    k = int(cv.kernel.shape[0])
    eff = cv.dilation * (k - 1) + 1
    h, w = int(x.shape[1]), int(x.shape[2])
    same_ok = True
    for n in (h, w):
        torch_out = (n + 2 * cv.pad - eff) // cv.stride + 1
        same_out = -(-n // cv.stride)
        total = max((same_out - 1) * cv.stride + eff - n, 0)
        if torch_out != same_out or total // 2 != cv.pad:
            same_ok = False
    if same_ok:
        padding = "SAME"
    else:
        if cv.pad:
            x = tf.pad(x, [[0, 0], [cv.pad, cv.pad], [cv.pad, cv.pad], [0, 0]])
        padding = "VALID"
    kernel = tf.constant(cv.kernel)
    if cv.depthwise:
        y = tf.nn.depthwise_conv2d(x, kernel, strides=[1, cv.stride, cv.stride, 1], padding=padding,
                                   dilations=[cv.dilation, cv.dilation])
    else:
        y = tf.nn.conv2d(x, kernel, strides=[1, cv.stride, cv.stride, 1], padding=padding,
                         dilations=[1, cv.dilation, cv.dilation, 1])
    y = tf.nn.bias_add(y, tf.constant(cv.bias))
    return tf.nn.relu(y) if cv.relu else y


def _apply_seq(tf: Any, x: Any, convs: list[_Conv]) -> Any:
    for cv in convs:
        x = _apply_conv(tf, x, cv)
    return x


def _apply_layer(tf: Any, x: Any, layer: Any) -> Any:
    if isinstance(layer, _Seq):
        return _apply_seq(tf, x, layer.convs)
    outs = [_apply_seq(tf, x, br) for br in layer.branches]
    y = _apply_conv(tf, tf.concat(outs, axis=3), layer.linear)
    if layer.scale != 1.0:
        y = y * layer.scale
    return tf.nn.relu(y + _apply_conv(tf, x, layer.shortcut))


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ZooError(f"{name} must be a positive integer, got {v!r}")
        if v > 8192:
            raise ZooError(f"{name} {v} is too large (max 8192)")


def build_module(state_dict: Mapping[str, Any], arch: str, num_classes: int, width: int, height: int,
                 head: str) -> Any:
    """Builds the NHWC TensorFlow module of an UltraFace network.

    ``state_dict`` uses the original checkpoint key names (arrays or CPU
    tensors; ``num_batches_tracked`` optional).  Keys and shapes are checked
    strictly: a missing, unexpected or mis-shaped key raises ``ZooError``
    naming it.  Channel counts come from the weights; the classification
    heads must have ``anchors * num_classes`` outputs.

    The returned ``tf.Module`` has ``serve``, a ``tf.function`` with input
    signature ``input: (1, height, width, 3) float32`` (RGB, (pixel-127)/128)
    returning ``{"scores": (1, P, K) softmaxed, "boxes": (1, P, 4)}``; boxes
    are raw offsets for ``head="raw"`` or corner boxes ``(x1, y1, x2, y2)``
    in [0, 1] units for ``head="decoded"`` (priors baked in).  Calling the
    module calls ``serve``.  Attributes: ``arch, num_classes, width, height,
    head, num_priors``.
    """
    import tensorflow as tf

    from zoo.priors import generate_priors

    if arch not in ARCHS:
        raise ZooError(f"unknown arch {arch!r} (expected one of {', '.join(ARCHS)})")
    if head not in HEADS:
        raise ZooError(f"unknown head {head!r} (expected one of {', '.join(HEADS)})")
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 2:
        raise ZooError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    _check_size(width, height)
    plan = _make_plan(state_dict, arch, int(num_classes))
    priors = generate_priors(int(width), int(height))
    module = _make_module_class(tf)(plan, int(width), int(height), head, priors)
    try:
        module.serve.get_concrete_function()  # trace now: shape problems surface here
    except ZooError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooError(f"cannot build {arch} for {width}x{height}: {first}") from None
    return module


def _make_module_class(tf: Any) -> type:
    class UltraFaceModule(tf.Module):
        def __init__(self, plan: _Plan, width: int, height: int, head: str, priors: np.ndarray):
            super().__init__(name="ultraface")
            self._plan = plan
            self.arch = plan.arch
            self.num_classes = plan.num_classes
            self.width = width
            self.height = height
            self.head = head
            self.num_priors = int(priors.shape[0])
            self._priors = priors
            spec = tf.TensorSpec((1, height, width, 3), tf.float32, name=INPUT_NAME)
            self.serve = tf.function(self._forward, input_signature=[spec], autograph=False)

        def __call__(self, x: Any) -> Any:
            return self.serve(x)

        def _forward(self, x: Any) -> dict[str, Any]:
            plan = self._plan
            feats = []
            for i, layer in enumerate(plan.backbone):
                x = _apply_layer(tf, x, layer)
                if i in (7, 10, 12):
                    feats.append(x)
            feats.append(_apply_seq(tf, x, plan.extras))
            logits, offsets = [], []
            for lvl, f in enumerate(feats):
                c = _apply_seq(tf, f, plan.cls_heads[lvl])
                r = _apply_seq(tf, f, plan.reg_heads[lvl])
                # NHWC already matches PyTorch's permute(0, 2, 3, 1): a reshape suffices.
                logits.append(tf.reshape(c, [1, -1, plan.num_classes]))
                offsets.append(tf.reshape(r, [1, -1, 4]))
            logits = tf.concat(logits, axis=1)
            offsets = tf.concat(offsets, axis=1)
            p = int(logits.shape[1])
            if p != self.num_priors:
                raise ZooError(f"network yields {p} predictions but {self.width}x{self.height} has "
                               f"{self.num_priors} priors")
            scores = tf.nn.softmax(logits, axis=-1)
            if self.head == "raw":
                return {"scores": scores, "boxes": offsets}
            pr = tf.constant(self._priors[None])  # (1, P, 4) cx, cy, w, h
            centers = offsets[..., :2] * CENTER_VARIANCE * pr[..., 2:] + pr[..., :2]
            sizes = tf.exp(offsets[..., 2:] * SIZE_VARIANCE) * pr[..., 2:]
            half = sizes * 0.5
            boxes = tf.concat([centers - half, centers + half], axis=-1)
            return {"scores": scores, "boxes": boxes}

    return UltraFaceModule


# --------------------------------------------------------------------------
# SavedModel and conversion
# --------------------------------------------------------------------------


def save_saved_model(module: Any, out_dir: str | os.PathLike) -> None:
    """Writes ``module`` (from :func:`build_module`) as a TF SavedModel.

    The signature ``serving_default`` has input ``input`` and outputs
    ``scores``/``boxes``.  Atomic: written to a temporary folder beside
    ``out_dir`` and renamed into place (an existing ``out_dir`` is replaced).
    """
    import tensorflow as tf

    out = Path(out_dir)
    if not hasattr(module, "serve"):
        raise ZooError("save_saved_model expects a module made by build_module")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        sig = module.serve.get_concrete_function()
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE_KEY: sig})
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "x")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except ZooError:
        raise
    except Exception as exc:
        raise ZooError(f"could not write SavedModel {out}: {exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _saved_model_input_shape(tf: Any, saved_model_dir: Path) -> tuple[int, ...]:
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except Exception as exc:
        raise ZooError(f"cannot load SavedModel {saved_model_dir}: {exc}") from None
    try:
        fn = loaded.signatures[SIGNATURE_KEY]
    except KeyError:
        raise ZooError(f"SavedModel {saved_model_dir} has no {SIGNATURE_KEY!r} signature") from None
    specs = fn.structured_input_signature[1]
    if INPUT_NAME not in specs:
        raise ZooError(f"SavedModel {saved_model_dir} has no input named {INPUT_NAME!r}")
    return tuple(int(d) for d in specs[INPUT_NAME].shape)


def convert(saved_model_dir: str | os.PathLike, out_path: str | os.PathLike, *, precision: str,
            calib: np.ndarray | None = None, int8_io: bool = False) -> dict:
    """Converts a SavedModel from :func:`save_saved_model` to a ``.tflite`` file.

    ``precision``: ``"fp32"``; ``"fp16"`` (float16 weights, float compute);
    ``"int8"`` (full-integer quantization calibrated on ``calib``, an
    ``(N, H, W, 3)`` float32 array of preprocessed images; ``int8_io=True``
    makes the input/output tensors int8, otherwise they stay float32).
    Deterministic (same inputs -> identical bytes), offline.  The file is
    written atomically.  Returns a manifest dict::

        {"precision", "int8_io", "size", "sha256",
         "inputs":  [{"name", "shape", "dtype", "scale", "zero_point"}],
         "outputs": [{"name", "shape", "dtype", "scale", "zero_point"}, ...]}

    (``scale``/``zero_point`` are 0.0/0 for float tensors, as TFLite stores them.)
    """
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if int8_io and precision != "int8":
        raise ZooError("int8_io=True requires precision='int8'")
    sm = Path(saved_model_dir)
    if not (sm / "saved_model.pb").is_file():
        raise ZooError(f"{sm} is not a SavedModel folder (no saved_model.pb)")
    out = Path(out_path)

    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=[SIGNATURE_KEY])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ZooError(f"cannot read SavedModel {sm}: {first}") from None
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calib is None:
            raise ZooError("int8 conversion needs calibration images (calib)")
        calib = np.asarray(calib)
        shape = _saved_model_input_shape(tf, sm)
        if calib.ndim != 4 or calib.shape[0] < 1 or tuple(calib.shape[1:]) != shape[1:]:
            raise ZooError(f"calib must have shape (N, {shape[1]}, {shape[2]}, {shape[3]}), got {calib.shape}")
        if not np.all(np.isfinite(calib)):
            raise ZooError("calib contains non-finite values")
        samples = np.ascontiguousarray(calib, dtype=np.float32)

        def representative() -> Any:
            for i in range(samples.shape[0]):
                yield {INPUT_NAME: samples[i:i + 1]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # int8 calibration goes through TF's own (deprecated) interpreter: not ours to fix.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            data = converter.convert()
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ZooError(f"TFLite conversion ({precision}) failed: {lines[-1]}") from None
    _atomic_write(out, data)
    info = describe(out)
    info.update({"precision": precision, "int8_io": bool(int8_io)})
    return info


def _tensor_info(name: str, d: dict) -> dict:
    q = d.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), dtype=np.float64)
    zps = np.asarray(q.get("zero_points", []), dtype=np.int64)
    scale, zp = d.get("quantization", (0.0, 0))
    if scales.size > 1 or zps.size > 1:
        raise ZooError(f"tensor {name!r} is quantized per channel; not supported for IO")
    return {"name": name, "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale), "zero_point": int(zp)}


def describe(path: str | os.PathLike) -> dict:
    """Size, sha256 and named IO tensors (shape, dtype, scale, zero point) of a ``.tflite`` file."""
    from ai_edge_litert.interpreter import Interpreter

    p = Path(path)
    data = p.read_bytes()
    try:
        it = Interpreter(model_content=data)
    except Exception as exc:
        raise ZooError(f"cannot load {p}: {exc}") from None
    ins, outs = _signature_io(it)
    rank = {"scores": 0, "boxes": 1}
    outs = sorted(outs, key=lambda t: rank.get(t[0], 2))
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": [_tensor_info(n, d) for n, d in ins],
        "outputs": [_tensor_info(n, d) for n, d in outs],
    }


def _signature_io(it: Any) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(name, tensor details) of inputs and outputs, named by the signature when there is one."""
    in_details = it.get_input_details()
    out_details = it.get_output_details()
    by_index_in = {d["index"]: d for d in in_details}
    by_index_out = {d["index"]: d for d in out_details}
    sigs = it._get_full_signature_list() if hasattr(it, "_get_full_signature_list") else None
    if sigs:
        sig = sigs.get(SIGNATURE_KEY) or next(iter(sigs.values()))
        ins = [(n, by_index_in[i]) for n, i in sig.get("inputs", {}).items() if i in by_index_in]
        outs = [(n, by_index_out[i]) for n, i in sig.get("outputs", {}).items() if i in by_index_out]
        if len(ins) == len(in_details) and len(outs) == len(out_details):
            return ins, outs
    return [(d["name"], d) for d in in_details], [(d["name"], d) for d in out_details]


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


class TfliteNet:
    """Runs an UltraFace ``.tflite`` with LiteRT (``ai_edge_litert``).

    ``infer(x)`` takes ``(N, H, W, 3)`` float32 preprocessed NHWC images and
    returns ``{"scores": (N, P, K), "boxes": (N, P, 4)}`` float32; a model
    with batch 1 is run once per image.  Int8/uint8 inputs are quantized with
    the input tensor's scale/zero point, quantized outputs dequantized with
    their own.  Outputs are told apart by shape (last dim K vs 4); only when
    K == 4 do names (signature or tensor names) and then order decide.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ZooError(f"ai-edge-litert is not installed: {exc}") from None
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ZooError(f"threads must be a positive integer, got {threads!r}")
        p = Path(path)
        if not p.is_file():
            raise ZooError(f"no such TFLite file: {p}")
        self.path = p
        try:
            self._it = Interpreter(model_path=str(p), num_threads=threads)
            self._it.allocate_tensors()
        except Exception as exc:
            raise ZooError(f"cannot load TFLite model {p}: {exc}") from None
        ins, outs = _signature_io(self._it)
        if len(ins) != 1:
            raise ZooError(f"{p}: expected 1 input, found {len(ins)}")
        self._in = ins[0][1]
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ZooError(f"{p}: input shape {shape} is not NHWC (N, H, W, 3)")
        self.input_shape = shape
        self._scores, self._boxes = self._pick_outputs(outs)
        self.num_classes = int(self._scores["shape"][-1])

    def _pick_outputs(self, outs: list[tuple[str, dict]]) -> tuple[dict, dict]:
        if len(outs) != 2:
            raise ZooError(f"{self.path}: expected 2 outputs (scores, boxes), found {len(outs)}")
        for _, d in outs:
            if len(d["shape"]) != 3:
                raise ZooError(f"{self.path}: output shape {tuple(d['shape'])} is not (N, P, C)")
        if outs[0][1]["shape"][1] != outs[1][1]["shape"][1]:
            raise ZooError(f"{self.path}: outputs disagree on the number of priors")
        last = [int(d["shape"][-1]) for _, d in outs]
        if last.count(4) == 1:
            boxes = outs[last.index(4)][1]
            scores = outs[1 - last.index(4)][1]
            return scores, boxes
        if last.count(4) == 0:
            raise ZooError(f"{self.path}: no output with 4 box coordinates (shapes {last})")
        # K == 4: names first, order (scores, boxes) last.
        names = [n.lower() for n, _ in outs]
        for i in (0, 1):
            other = names[1 - i]
            if "box" in names[i] and "box" not in other:
                return outs[1 - i][1], outs[i][1]
            if "score" in names[i] and "score" not in other:
                return outs[i][1], outs[1 - i][1]
        return outs[0][1], outs[1][1]

    def __enter__(self) -> "TfliteNet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._it = None

    def _run_one(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        it = self._it
        if it is None:
            raise ZooError("TfliteNet is closed")
        d = self._in
        dtype = np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.integer):
            scale, zp = d["quantization"]
            if not scale:
                raise ZooError(f"{self.path}: integer input without quantization parameters")
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)
        else:
            x = x.astype(dtype, copy=False)
        try:
            it.set_tensor(d["index"], np.ascontiguousarray(x))
            it.invoke()
            res = []
            for o in (self._scores, self._boxes):
                y = it.get_tensor(o["index"])
                if np.issubdtype(y.dtype, np.integer):
                    scale, zp = o["quantization"]
                    y = (y.astype(np.float32) - zp) * np.float32(scale)
                res.append(y.astype(np.float32, copy=True))
        except ZooError:
            raise
        except Exception as exc:
            raise ZooError(f"LiteRT inference failed on {self.path}: {exc}") from None
        return res[0], res[1]

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ZooError(f"input must have shape (N, {', '.join(map(str, self.input_shape[1:]))}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ZooError(f"input must be float32 preprocessed images, got {x.dtype}")
        x = x.astype(np.float32, copy=False)
        n, mb = x.shape[0], self.input_shape[0]
        if n == mb:
            chunks = [x]
        elif mb == 1:
            chunks = [x[i:i + 1] for i in range(n)]
        else:
            raise ZooError(f"model batch is {mb}; cannot run a batch of {n}")
        scores, boxes = zip(*(self._run_one(c) for c in chunks))
        return {"scores": np.concatenate(scores, axis=0), "boxes": np.concatenate(boxes, axis=0)}
