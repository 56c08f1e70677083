"""Layer by layer: which PyTorch module a runtime's tensor comes from, and how far it is from PyTorch's.

One implementation shared by `zoo diff` (zoo.validation.diff) and the int8 sensitivity analysis
(zoo.core.model.sensitivity): the module-to-tensor mapping (`onnx_module_name`, `onnx_origin`,
`ModelLayers.resolve`) and the error metrics (`ErrorStats`, `tensor_error`, `output_error`).

Fused groups. A converter folds BatchNorm into the convolution before it (every format here) and
most runtimes also fuse the ReLU after it; a runtime tensor is then the output of the group, and it
compares at the group's last PyTorch module: ``base_net.1.0`` (Conv2d) + ``base_net.1.1``
(BatchNorm2d, folded) is compared at ``base_net.1.1``; with the ReLU fused too, at ``base_net.1.2``.
The groups are read off the PyTorch model itself by running it once with forward hooks (which
module consumes which module's output), never from the names.

A runtime says where a tensor comes from as an *origin*: ``(scope, kind)`` with ``scope`` a PyTorch
module path and ``kind`` one of ``"Conv"`` (a convolution's output, its BatchNorm folded in),
``"ConvRelu"`` (the same with the activation after it fused in) or ``"Relu"`` (a ReLU module's
output). `ModelLayers.resolve` turns an origin into the module to compare with, or None.

Torch is imported lazily: the name helpers and metrics are used where torch is not loaded.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

#: the origin kinds a runtime tensor may have (see the module docstring)
KINDS = ("Conv", "ConvRelu", "Relu")


# ------------------------------------------------------------------------------------- names
def onnx_module_name(node_name: str) -> str | None:
    """The PyTorch module path of an exported ONNX node: '/base_net.7/branch0/branch0.0/conv/Conv'
    -> 'base_net.7.branch0.0.conv' (torch.onnx names a node by the scopes it ran in: a child of a
    Sequential or ModuleList appears as 'parent.index'). None for a name not of that form."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    scopes = parts[:-1]  # the last part is the op ('Conv', 'Conv_1')
    name = scopes[0]
    prev = scopes[0]
    for s in scopes[1:]:
        name += s[len(prev):] if s.startswith(prev + ".") else "." + s
        prev = s
    return name


_ONNX_OP = re.compile(r"^(?P<op>[A-Za-z]+)(?:_\d+)?(?:_output_\d+)?$")


def onnx_origin(name: str) -> tuple[str, str] | None:
    """``(module path, op type)`` of an ONNX node name or node output name as torch.onnx writes them
    ('/base_net.1/base_net.1.0/Conv_output_0' -> ('base_net.1.0', 'Conv')); None for any other
    name (graph outputs, tensors added by a later pass such as quantization's '..._QuantizeLinear')."""
    if not name.startswith("/"):
        return None
    m = _ONNX_OP.match(name.rsplit("/", 1)[-1])
    scope = onnx_module_name(name)
    if m is None or scope is None:
        return None
    return scope, m.group("op")


# ------------------------------------------------------------------------------------- metrics
@dataclass
class ErrorStats:
    """Error of a runtime tensor against the PyTorch one, accumulated image by image (so a whole
    image set is measured without holding it): max and mean absolute error, relative L2 error
    ||got - ref|| / ||ref||, cosine similarity, and the reference's peak |value| (the scale a
    tolerance is relative to). Shapes must agree."""

    count: int = 0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    sum_d2: float = 0.0
    sum_r2: float = 0.0
    sum_g2: float = 0.0
    dot: float = 0.0
    ref_peak: float = 0.0
    finite: bool = True

    def add(self, ref: np.ndarray, got: np.ndarray) -> "ErrorStats":
        # float32 arrays, float32 BLAS dot products summed into float64 totals: one pass each, fast
        # enough for every tensor of every image (a float64 copy of each made `zoo diff` 5x slower)
        r = np.ascontiguousarray(ref, dtype=np.float32).ravel()
        g = np.ascontiguousarray(got, dtype=np.float32).ravel()
        if r.shape != g.shape:
            raise ValueError(f"shapes differ: {np.shape(ref)} vs {np.shape(got)}")
        if not np.isfinite(g).all():
            self.finite = False
            g = np.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        if not r.size:
            return self
        d = g - r
        ad = np.abs(d)
        self.count += r.size
        self.max_abs = max(self.max_abs, float(ad.max()))
        self.ref_peak = max(self.ref_peak, float(max(r.max(), -r.min())))
        self.sum_abs += float(ad.sum(dtype=np.float64))
        self.sum_d2 += float(np.dot(d, d))
        self.sum_r2 += float(np.dot(r, r))
        self.sum_g2 += float(np.dot(g, g))
        self.dot += float(np.dot(r, g))
        return self

    def result(self) -> dict:
        """{"max_abs", "mean_abs", "rel_l2", "cosine"} (a non-finite runtime tensor: inf error, cosine 0)."""
        if not self.finite:
            return {"max_abs": math.inf, "mean_abs": math.inf, "rel_l2": math.inf, "cosine": 0.0}
        rel = math.sqrt(self.sum_d2) / math.sqrt(self.sum_r2) if self.sum_r2 > 0 else (0.0 if self.sum_d2 == 0 else math.inf)
        den = math.sqrt(self.sum_r2 * self.sum_g2)
        cos = self.dot / den if den > 0 else (1.0 if self.sum_r2 == self.sum_g2 == 0 else 0.0)
        return {"max_abs": self.max_abs, "mean_abs": self.sum_abs / self.count if self.count else 0.0,
                "rel_l2": rel, "cosine": max(-1.0, min(1.0, cos))}


def tensor_error(ref: np.ndarray, got: np.ndarray) -> dict:
    """`ErrorStats` of one pair of arrays: {"max_abs", "mean_abs", "rel_l2", "cosine"}."""
    return ErrorStats().add(ref, got).result()


def output_error(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> float:
    """Face-score change where either run sees something, plus a tenth of the box-offset change on
    faces: ``ref`` and ``got`` are (scores (N, P, K), locations (N, P, 4)); what a face detector loses."""
    ps, pg = ref[0][..., 1:].max(-1), got[0][..., 1:].max(-1)
    active = np.maximum(ps, pg) > 0.05
    score_err = float(np.abs(ps - pg)[active].mean()) if active.any() else 0.0
    face = ps > 0.5
    box_err = float(np.abs(ref[1] - got[1])[face].mean()) if face.any() else 0.0
    return score_err + 0.1 * box_err


# ------------------------------------------------------------------------------------- the model's layers
@dataclass
class ModelLayers:
    """The leaf modules of a PyTorch model in execution order, and who feeds whom.

    ``order``: leaf module names as they run; ``kinds``: their class names; ``producer``: for each,
    the leaf module whose output it consumes (None when its input comes from an op that is no
    module: the model input, a concatenation, an addition); ``shapes``: output shapes (batch 1)."""

    order: list[str]
    kinds: dict[str, str]
    producer: dict[str, str | None]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self):
        self.index = {n: i for i, n in enumerate(self.order)}
        self.consumers: dict[str, list[str]] = {n: [] for n in self.order}
        for n, p in self.producer.items():
            if p is not None:
                self.consumers[p].append(n)

    def _sole(self, name: str, kind: str) -> str | None:
        """The one consumer of ``name``'s output when it is a module of ``kind`` and ``name`` feeds nothing else."""
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 and self.kinds.get(c[0]) == kind else None

    def folded(self, conv: str) -> str:
        """A convolution's output with its BatchNorm folded in: the BatchNorm module, or the conv itself."""
        return self._sole(conv, "BatchNorm2d") or conv

    def activated(self, conv: str) -> str:
        """A convolution group's end with the activation after it fused: the ReLU module, else `folded`."""
        end = self.folded(conv)
        return self._sole(end, "ReLU") or end

    def convs(self) -> list[str]:
        return [n for n in self.order if self.kinds[n] == "Conv2d"]

    def resolve(self, origin: tuple[str, str] | None) -> str | None:
        """The module a runtime tensor of ``origin`` (scope, kind) compares with, or None."""
        if not origin:
            return None
        scope, kind = origin
        k = self.kinds.get(scope)
        if k == "Conv2d" and kind == "Conv":
            return self.folded(scope)
        if k == "Conv2d" and kind == "ConvRelu":
            return self.activated(scope)
        if k == "ReLU" and kind == "Relu":
            return scope
        return None

    def feeding(self, module: str, mapped: set[str]) -> str | None:
        """The nearest module of ``mapped`` upstream of ``module``'s group (through the producers), or None."""
        seen = set()
        p = self.producer.get(module)
        # skip the rest of this module's own group (a ReLU row's input is its conv+BN)
        while p is not None and p not in seen:
            seen.add(p)
            if p in mapped:
                return p
            p = self.producer.get(p)
        return None


def _leaves(model):
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def model_layers(model, x) -> ModelLayers:
    """The `ModelLayers` of ``model`` (eval mode), from one forward pass of ``x[:1]`` with hooks."""
    import torch  # heavy

    order: list[str] = []
    kinds: dict[str, str] = {}
    producer: dict[str, str | None] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    made: dict[int, str] = {}  # id of an output tensor -> the leaf module that last wrote it
    keep: list = []  # hold the tensors so their ids stay unique during the pass

    def pre(m, inp, n):
        t = inp[0] if inp else None
        producer[n] = made.get(id(t)) if isinstance(t, torch.Tensor) else None

    def post(m, inp, out, n):
        order.append(n)
        kinds[n] = type(m).__name__
        shapes[n] = tuple(out.shape)
        made[id(out)] = n
        keep.append(out)

    x1 = x[:1] if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x[:1], dtype=np.float32))
    hooks = []
    for n, m in _leaves(model):
        hooks.append(m.register_forward_pre_hook(lambda m, i, n=n: pre(m, i, n)))
        hooks.append(m.register_forward_hook(lambda m, i, o, n=n: post(m, i, o, n)))
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in hooks:
            h.remove()
    return ModelLayers(order=order, kinds=kinds, producer=producer, shapes=shapes)


def capture(model, x, modules) -> dict[str, np.ndarray]:
    """The outputs of ``modules`` (leaf module names) for the batch ``x``, as float32 arrays; each is
    copied when its module runs (an in-place ReLU later would change it)."""
    import torch  # heavy

    mods = dict(model.named_modules())
    got: dict[str, np.ndarray] = {}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o.detach().float().numpy().copy()))
             for n in modules]
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return got
