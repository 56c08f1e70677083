"""The UltraFace network built natively in TensorFlow (NHWC) from the checkpoint.

The ``state_dict`` (original key names) is read strictly into a numpy "plan" of
layers with BatchNorm folded into the conv weights and biases, then replayed
with ``tf.nn`` ops inside a ``tf.Module`` whose ``serve`` ``tf.function`` has a
fixed ``(1, H, W, 3)`` float32 input signature.  No Keras, no ONNX detour.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from zoo.core.errors import ZooError
from zoo.core.model.priors import CENTER_VARIANCE, SIZE_VARIANCE, anchors_per_level, generate_priors
from zoo.core.model.specs import ARCHES, HEADS, MAX_SIDE

#: Anchors per detection level (fixed by the family's prior layout).
ANCHORS = tuple(anchors_per_level())
BN_EPS = 1e-5
#: Input name and signature key of the module's SavedModel (and so of the .tflite).
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
    module: str  # the PyTorch module path of the convolution ("base_net.7.branch0.1.conv")

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
                 stride=stride, pad=pad, dilation=dilation, relu=relu, module=prefix)


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

#: the TF ops that compute a convolution (tf.nn.conv2d, tf.nn.depthwise_conv2d)
_CONV_OPS = ("Conv2D", "depthwise")


def conv_module(tensor_name: str) -> str | None:
    """The PyTorch module path of the convolution whose TFLite output tensor is ``tensor_name``.

    Each convolution's ops run in a name scope of its module path, and the converter names a
    fused op by the locations it fused, joined by ';' ("base_net.1.0/Relu;base_net.1.0/BiasAdd;
    base_net.1.0/depthwise;..."): the part naming the conv op gives the scope. None for a tensor
    of no convolution."""
    for part in tensor_name.split(";"):
        scope, _, op = part.rpartition("/")
        if scope and op in _CONV_OPS:
            return scope
    return None


def _apply_conv(tf: Any, x: Any, cv: _Conv) -> Any:  # noqa: D401
    """Conv in NHWC reproducing PyTorch's symmetric padding exactly, its ops in a name scope of
    the PyTorch module's path (so the .tflite names it: see :func:`conv_module`)."""
    with tf.name_scope(cv.module):
        return _conv_body(tf, x, cv)


def _conv_body(tf: Any, x: Any, cv: _Conv) -> Any:
    k = int(cv.kernel.shape[0])
    eff = cv.dilation * (k - 1) + 1
    same_ok = x.shape[1] is not None and x.shape[2] is not None  # a free size: PyTorch's padding, explicitly
    for n in ((int(x.shape[1]), int(x.shape[2])) if same_ok else ()):
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
    return tf.nn.relu(y + _apply_conv(tf, x, layer.shortcut))


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ZooError(f"{name} must be a positive integer, got {v!r}")
        if v > MAX_SIDE:
            raise ZooError(f"{name} {v} is too large (max {MAX_SIDE})")


def build_module(state_dict: Mapping[str, Any], arch: str, num_classes: int, width: int, height: int,
                 head: str, dynamic: bool = False) -> Any:
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
    in [0, 1] units for ``head="decoded"`` (priors baked in).  Attributes:
    ``arch, num_classes, width, height, head, num_priors``.

    ``dynamic`` (raw head only): the signature is ``(None, None, None, 3)``: batch, height and width
    free at run time (every padding explicit, reshapes keep the batch); ``width`` x ``height`` is then
    only the size it is traced and checked at.
    """
    import tensorflow as tf  # heavy: imported when used

    if arch not in ARCHES:
        raise ZooError(f"unknown arch {arch!r} (expected one of {', '.join(ARCHES)})")
    if head not in HEADS:
        raise ZooError(f"unknown head {head!r} (expected one of {', '.join(HEADS)})")
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 2:
        raise ZooError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    _check_size(width, height)
    if dynamic and head != "raw":
        raise ZooError("a dynamic TFLite/SavedModel network has the raw head (priors are made for the actual size)")
    plan = _make_plan(state_dict, arch, int(num_classes))
    priors = generate_priors(int(width), int(height))
    module = _make_module_class(tf)(plan, int(width), int(height), head, priors, dynamic)
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
        def __init__(self, plan: _Plan, width: int, height: int, head: str, priors: np.ndarray, dynamic: bool = False):
            super().__init__(name="ultraface")
            self._plan = plan
            self.arch = plan.arch
            self.num_classes = plan.num_classes
            self.width = width
            self.height = height
            self.head = head
            self.num_priors = int(priors.shape[0])
            self._priors = priors
            self.dynamic = dynamic
            shape = (None, None, None, 3) if dynamic else (1, height, width, 3)
            spec = tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)
            self.serve = tf.function(self._forward, input_signature=[spec], autograph=False)

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
                n = tf.shape(c)[0] if self.dynamic else 1
                logits.append(tf.reshape(c, tf.stack([n, -1, plan.num_classes]) if self.dynamic else [1, -1, plan.num_classes]))
                offsets.append(tf.reshape(r, tf.stack([n, -1, 4]) if self.dynamic else [1, -1, 4]))
            logits = tf.concat(logits, axis=1)
            offsets = tf.concat(offsets, axis=1)
            p = logits.shape[1]
            if not self.dynamic and int(p) != self.num_priors:
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
