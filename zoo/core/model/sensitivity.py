"""Which layers of a model int8 hurts most: one analysis per model and checkpoint, shared by every target.

The analysis runs the PyTorch model with fake quantization (no runtime involved): for each
convolution alone, its weights per output channel (symmetric int8, 127/max|w|) and its input
activation per tensor (asymmetric uint8 over the calibration min..max) are rounded, the others
stay float, and the error that this one layer causes on the network's outputs is measured on
the calibration images. The error counts what a face detector loses: the change of the face
scores where either run sees something (score > 0.05), plus a tenth of the change of the box
offsets where the reference sees a face (score > 0.5).

`choose` then keeps in float the most sensitive convolutions: those whose error is at least
``KEEP_RATIO`` of the worst one's, within ``MAX_FLOAT_PARAMS`` of the weights (an int8 file stays under 45% of the fp32 one). Every target maps the chosen PyTorch module names to its own
layers (zoo.core.model.layers.onnx_module_name: ONNX node names, which MNN and the others inherit; TFLite names its
convolutions by the module paths themselves, zoo.exporters.tflite.network.conv_module), so the same
layers stay float wherever the format allows it. The result is JSON-ready and recorded in each
int8 artifact's metadata, with each kept layer's parameter count (its price in bytes).

Measured on the UltraFace family (rfb-320, slim-320 with the built-in calibration material), the
most sensitive layers are the small early ones (the stem and the first depthwise/pointwise
pairs, a few hundred weights each), where one activation scale per tensor is what hurts. The
thresholds were set on the calibration material's held-out part (MNN rfb-320: keeping the layers
within 0.3 of the worst (5 layers) left a held-out error of 0.0092, within 0.05 (28 layers) 0.0042),
never on the parity photos.
"""
from __future__ import annotations

import numpy as np

# the module-to-tensor mapping and the error metrics are shared with `zoo diff` (one implementation)
from zoo.core.model.layers import model_layers, onnx_module_name, output_error  # noqa: F401  (re-exported)

#: keep a convolution float when its error is at least this fraction of the worst layer's
KEEP_RATIO = 0.1
#: at most this fraction of the convolution weights stays float
MAX_FLOAT_PARAMS = 0.10
#: images the analysis runs on (spread over the calibration set)
MAX_IMAGES = 8


def _fake_act(a, lo: float, hi: float):
    import torch  # heavy

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / 255.0 or 1.0
    zp = round(-lo / s)
    return (torch.clamp(torch.round(a / s) + zp, 0, 255) - zp) * s


def _fake_weight(w):
    import torch  # heavy

    amax = w.abs().reshape(w.shape[0], -1).max(1).values.clamp(min=1e-12).reshape(-1, *([1] * (w.dim() - 1)))
    s = amax / 127.0
    return torch.clamp(torch.round(w / s), -127, 127) * s


def _convs_in_order(model, x) -> list[str]:
    return model_layers(model, x).convs()


def _input_ranges(model, x, names: list[str]) -> dict[str, tuple[float, float]]:
    import torch  # heavy

    mods = dict(model.named_modules())
    r = {n: [np.inf, -np.inf] for n in names}

    def seen(n, a):
        r[n][0] = min(r[n][0], float(a.min()))
        r[n][1] = max(r[n][1], float(a.max()))

    hooks = [mods[n].register_forward_pre_hook(lambda m, i, n=n: seen(n, i[0])) for n in names]
    try:
        with torch.no_grad():
            for k in range(x.shape[0]):
                model(x[k:k + 1])
    finally:
        for h in hooks:
            h.remove()
    return {n: (float(v[0]), float(v[1])) for n, v in r.items()}


def _run(model, x, quantized: list[str], ranges, start=None) -> tuple[np.ndarray, np.ndarray]:
    """The raw outputs with the ``quantized`` convolutions fake-quantized. ``start``: (stage, that
    stage's input, the levels before it) from an unquantized pass (UltraFace.forward_from's ``keep``),
    to run only from there on; every quantized layer must be in that stage or after it."""
    import torch  # heavy

    mods = dict(model.named_modules())
    saved, hooks = {}, []
    for n in quantized:
        m = mods[n]
        saved[n] = m.weight.data.clone()
        m.weight.data = _fake_weight(m.weight.data)
        lo, hi = ranges[n]
        hooks.append(m.register_forward_pre_hook(lambda m, i, lo=lo, hi=hi: (_fake_act(i[0], lo, hi),)))
    try:
        with torch.no_grad():
            scores, locations = model(x) if start is None else model.forward_from(*start)
    finally:
        for h in hooks:
            h.remove()
        for n, w in saved.items():
            mods[n].weight.data = w
    return scores.numpy(), locations.numpy()


def analyse(model, calib: np.ndarray) -> dict:
    """Per-convolution int8 sensitivity of ``model`` (a raw-head UltraFace in eval mode) on ``calib``
    ((N, 3, H, W) preprocessed images). Returns {"layers": [{"module", "params", "error"}] in
    execution order, "images": n, "all_int8_error": error with every convolution quantized}.

    Each layer's run starts at the stage that holds it, from the unquantized pass's input to that
    stage (UltraFace.forward_from): what comes before is unchanged by the layer, so the result is
    the whole pass's, bit for bit, at about a quarter of the cost (rfb-640: 11.1 s against 44.2 s
    on one thread)."""
    import torch  # heavy

    if calib.ndim != 4 or calib.shape[0] < 1:
        raise ValueError(f"calibration batch must be (N, 3, H, W), got {calib.shape}")
    n = calib.shape[0]
    k = min(n, MAX_IMAGES)
    pick = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})  # k images spread over the set
    x = torch.from_numpy(np.ascontiguousarray(calib[pick], dtype=np.float32))
    names = _convs_in_order(model, x)
    ranges = _input_ranges(model, x, names)
    stages: list = []
    with torch.no_grad():
        ref = tuple(t.numpy() for t in model.forward_from(0, x, [], [], keep=stages))
    mods = dict(model.named_modules())
    layers = []
    for name in names:
        s = model.stage_of(name)
        got = _run(model, x, [name], ranges, start=(s, *stages[s]))
        layers.append({"module": name, "params": int(mods[name].weight.numel()), "error": output_error(ref, got)})
    return {"layers": layers, "images": len(pick), "all_int8_error": output_error(ref, _run(model, x, names, ranges))}


def choose(analysis: dict, keep_ratio: float = KEEP_RATIO, max_float_params: float = MAX_FLOAT_PARAMS) -> list[str]:
    """The convolutions to keep float (module names, most sensitive first)."""
    layers = analysis["layers"]
    if not layers:
        return []
    worst = max(l["error"] for l in layers)
    budget = max_float_params * sum(l["params"] for l in layers)
    kept, used = [], 0
    for l in sorted(layers, key=lambda l: -l["error"]):
        if worst <= 0 or l["error"] < keep_ratio * worst:
            break
        if used + l["params"] <= budget:
            kept.append(l["module"])
            used += l["params"]
    return kept
