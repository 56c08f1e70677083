"""Our ncnn int8 quantizer (the ncnn wheel ships no ncnn2table / ncnn2int8).

Per-output-channel int8 weights, one input-activation scale per layer from a percentile of
|x| over the calibration batch, and the ``@auto`` policy that keeps the most sensitive layers
float within a size budget.  The file layout written is documented in `zoo.exporters.ncnn.param`.
"""
from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np

from zoo.exporters.ncnn.param import (
    TAG_INT8, ConvData, ParamLayer, align4, file_size, input_blobs, load_pair, param_text,
)
from zoo.exporters.ncnn.runner import NcnnNet
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_bytes

METHOD = "percentile"
#: token understood by ``quantize_int8(skip_layers=...)`` besides layer names:
#: measured per-layer sensitivity, fp32 within a size budget
SKIP_AUTO = "@auto"
_SAMPLES_PER_IMAGE = 50000  # |x| values sampled per layer and calibration image


def _quantize_weights(c: ConvData) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (Convolution) / per group (ConvolutionDepthWise) symmetric int8."""
    ly = c.layer
    groups = ly.geti(0) if ly.type == "Convolution" else ly.geti(7, 1)
    w = c.weight.astype(np.float32).reshape(groups, -1)
    amax = np.abs(w).max(axis=1)
    ws = np.where(amax > 0, 127.0 / np.maximum(amax, 1e-30), 1.0).astype(np.float32)
    qw = np.clip(np.round(w * ws[:, None]), -127, 127).astype(np.int8).ravel()
    return qw, ws


def _int8_nbytes(c: ConvData, n_scales: int) -> int:
    bias = 4 * c.layer.geti(0) if c.bias is not None else 0
    return 4 + align4(c.weight.size) + bias + 4 * (n_scales + 1)


def _build_int8(layers, blob: bytes, convs: dict[str, ConvData], act_scales: dict[str, float],
                qweights: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[bytes, bytes]:
    """(param text, bin bytes) with the layers in ``act_scales`` stored as ncnn int8."""
    new_layers = [ParamLayer(ly.type, ly.name, list(ly.bottoms), list(ly.tops), list(ly.params)) for ly in layers]
    by_name = {ly.name: ly for ly in new_layers}
    out = bytearray()
    cursor = 0
    for name, c in sorted(convs.items(), key=lambda kv: kv[1].start):
        out += blob[cursor:c.start]
        cursor = c.end
        if name not in act_scales:
            out += blob[c.start:c.end]  # stays float, bytes unchanged
            continue
        qw, ws = qweights[name]
        out += struct.pack("<I", TAG_INT8) + qw.tobytes() + b"\0" * (align4(qw.size) - qw.size)
        if c.bias is not None:
            out += c.bias.astype("<f4").tobytes()
        out += ws.astype("<f4").tobytes() + np.array([act_scales[name]], "<f4").tobytes()
        by_name[name].set(8, 2 if c.layer.type == "Convolution" else 1)
    out += blob[cursor:]
    return param_text(new_layers).encode(), bytes(out)


def _output_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """Sum over outputs of mean |got - ref| / std(ref)."""
    return float(sum(np.abs(got[b] - ref[b]).mean() / (ref[b].std() + 1e-12) for b in ref))


def _thresholds(param_path, bin_path, calib: np.ndarray, bottoms: dict[str, str], in_blob: str,
                percentile: float, threads: int) -> dict[str, float]:
    """{layer: T}: the ``percentile`` of the non-zero |x| of its bottom blob (fp32 run in ncnn), at most max |x|."""
    absmax = {n: 0.0 for n in bottoms}
    samples: dict[str, list[np.ndarray]] = {n: [] for n in bottoms}
    uniq = sorted(set(bottoms.values()))
    rng = np.random.default_rng(0)
    with NcnnNet(param_path, bin_path, threads=threads, input_blob=in_blob, output_blobs=uniq,
                 lightmode=False) as net:
        for i in range(calib.shape[0]):
            r = net.infer(calib[i:i + 1], blobs=uniq)
            for n, b in bottoms.items():
                v = np.abs(r[b][0].ravel())
                absmax[n] = max(absmax[n], float(v.max()))
                v = v[v > 0]
                if v.size > _SAMPLES_PER_IMAGE:
                    v = rng.choice(v, _SAMPLES_PER_IMAGE, replace=False)
                samples[n].append(v.astype(np.float32))
    out = {}
    for n in bottoms:
        if absmax[n] <= 0:
            out[n] = 1.0
            continue
        v = np.concatenate(samples[n])
        t = float(np.percentile(v, percentile)) if v.size else absmax[n]
        out[n] = float(min(max(t, 1e-8), absmax[n]))
    return out


def quantize_int8(param_path, bin_path, calib: np.ndarray, out_param, out_bin, *,
                  skip_layers: tuple = (SKIP_AUTO,), auto_keep: float = 0.8, max_size_ratio: float = 0.42,
                  input_blob: str | None = None, percentile: float = 99.99, sensitivity_images: int = 4,
                  threads: int = 1) -> dict:
    """Write an ncnn int8 model (ncnn's own format) from an fp32 (or fp16-stored) ncnn model.

    ``calib`` is the (N,3,H,W) float32 calibration batch, already preprocessed.  Every
    Convolution / ConvolutionDepthWise not kept float gets per-output-channel int8 weights
    (scale 127/max|w_c|) and one input-activation scale 127/T, T the ``percentile`` of |x|
    of its bottom blob over the batch (fp32 run in ncnn).  Measured on the UltraFace nets,
    the percentile was more accurate than a KL-divergence threshold (ncnn2table's), which
    clips the rare large activations that mark faces.

    ``skip_layers`` lists layer names to keep fp32 and/or the token ``SKIP_AUTO`` ('@auto',
    default: measure each layer's sensitivity -- error of the net's outputs with only that
    layer int8, on the first ``sensitivity_images`` calibration images -- then keep fp32 the
    most sensitive layers until they account for ``auto_keep`` of the summed sensitivity,
    never letting the files exceed ``max_size_ratio`` of the input's size).  On UltraFace this
    keeps the small high-resolution early layers fp32 (one activation scale per tensor is what
    hurts there) and quantizes the large late layers and the heads.

    Returns ``{"param", "bin", "method", "int8_layers", "fp32_layers", "activation_scales":
    {layer: s}, "activation_thresholds": {layer: T}, "weight_scales": {layer: [...]},
    "sensitivity": {layer: err} (with '@auto'), "size_bytes", "fp32_size_bytes", "size_ratio"}``.
    """
    calib = np.asarray(calib)
    if calib.ndim != 4 or calib.shape[0] < 1:
        raise ZooError(f"calibration batch must be (N,3,H,W), got {calib.shape}")
    calib = np.ascontiguousarray(calib, dtype=np.float32)
    layers, blob, convs = load_pair(param_path, bin_path)
    if any(c.dtype == "int8" or c.layer.geti(8) for c in convs.values()):
        raise ZooError(f"{param_path} is already quantized")
    if not convs:
        raise ZooError(f"{param_path} has no convolution to quantize")
    ins = input_blobs(layers)
    in_blob = input_blob or (ins[0] if len(ins) == 1 else None)
    if in_blob is None:
        raise ZooError(f"cannot tell the input blob among {ins}; pass input_blob=")
    fp32_size = file_size(param_path, bin_path)

    skip: set[str] = set()
    auto = False
    for s in skip_layers:
        if s == SKIP_AUTO:
            auto = True
        elif s in convs:
            skip.add(s)
        else:
            raise ZooError(f"skip_layers: no convolution named {s!r} (have {sorted(convs)})")
    candidates = [n for n in convs if n not in skip]

    thresholds = _thresholds(param_path, bin_path, calib, {n: convs[n].layer.bottoms[0] for n in candidates},
                             in_blob, percentile, threads)
    all_scales = {n: float(np.float32(127.0 / thresholds[n])) for n in candidates}
    qweights = {n: _quantize_weights(convs[n]) for n in candidates}

    # ---- '@auto': keep the most sensitive layers (per extra byte) in fp32 within the budget ----
    sensitivity: dict[str, float] = {}
    if auto:
        k = max(1, min(int(sensitivity_images), calib.shape[0]))
        sub = calib[:k]
        with tempfile.TemporaryDirectory(prefix="zoo_int8_") as tmp:
            with NcnnNet(param_path, bin_path, threads=threads, input_blob=in_blob) as net:
                ref = net.infer(sub)
            outs = list(ref)
            for n in candidates:
                ptxt, pbin = _build_int8(layers, blob, convs, {n: all_scales[n]}, qweights)
                pp, bp = Path(tmp) / "s.param", Path(tmp) / "s.bin"
                pp.write_bytes(ptxt)  # scratch files, deleted with the folder
                bp.write_bytes(pbin)
                with NcnnNet(pp, bp, threads=threads, int8=True, input_blob=in_blob, output_blobs=outs) as net:
                    sensitivity[n] = _output_error(ref, net.infer(sub))
        # bytes if everything is int8, then add back float layers greedily
        ptxt, pbin = _build_int8(layers, blob, convs, all_scales, qweights)
        size = len(ptxt) + len(pbin)
        budget = max_size_ratio * fp32_size
        extra = {n: (convs[n].end - convs[n].start) - _int8_nbytes(convs[n], qweights[n][1].size)
                 for n in candidates}
        total = sum(sensitivity.values())
        covered = 0.0
        for n in sorted(candidates, key=lambda n: sensitivity[n], reverse=True):
            if total <= 0 or covered >= auto_keep * total:
                break
            if size + extra[n] <= budget:
                skip.add(n)
                size += extra[n]
                covered += sensitivity[n]
    act_scales = {n: all_scales[n] for n in candidates if n not in skip}

    ptxt, pbin = _build_int8(layers, blob, convs, act_scales, qweights)
    atomic_write_bytes(Path(out_bin), pbin)
    atomic_write_bytes(Path(out_param), ptxt)
    size = len(ptxt) + len(pbin)
    return {
        "param": str(out_param),
        "bin": str(out_bin),
        "method": METHOD,
        "int8_layers": [n for n in convs if n in act_scales],
        "fp32_layers": [n for n in convs if n not in act_scales],
        "activation_scales": act_scales,
        "activation_thresholds": {n: thresholds[n] for n in act_scales},
        "weight_scales": {n: qweights[n][1].tolist() for n in act_scales},
        "sensitivity": sensitivity,
        "size_bytes": size,
        "fp32_size_bytes": fp32_size,
        "size_ratio": size / fp32_size,
    }
