"""An independent reference of the network's pre-processing, for the tests: nothing of zoo.core.

Written from the facts of the model (`../shared/docs/ultraface-model.md`, "Input"): the network takes
RGB, NCHW, float32, ``(pixel - 127) / 128``; the whole image is resized to the network size (no
letterbox, aspect ratio not kept). The resize is bilinear with pixel centres at half-integers (what
the original's OpenCV `resize` does by default), computed here in float64 and rounded to the nearest
8-bit value, as a resize of an 8-bit image gives. Decoding is Pillow's (RGB by construction), so a
channel order taken the wrong way round in our code cannot agree with it.

OpenCV's resize computes in fixed point (11-bit weights), so it lands one 8-bit step off this exact
computation on ~10% of the values (measured on the 16 pinned photos and the three built-in ones at
320x240 and 640x480: never more than one step, 8-13% of the values, always downwards). `agreement`
says how far apart two batches are in those steps; `check` holds them to one step at most, on few
values, with no drift on average.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MEAN, STD = 127.0, 128.0  # the model's normalisation (ultraface-model.md), not read from our code
STEP = 1.0 / STD  # one 8-bit step in the network's input units


def decode_rgb(path: Path) -> np.ndarray:
    """The image as RGB uint8 (H, W, 3), decoded by Pillow."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two source indices and the weight of the second (half-pixel centres)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def resize_bilinear(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8, bilinear with half-pixel centres, rounded."""
    a = rgb.astype(np.float64)
    y0, y1, fy = _axis(height, a.shape[0])
    x0, x1, fx = _axis(width, a.shape[1])
    fx3 = fx[None, :, None]
    top = a[y0][:, x0] * (1 - fx3) + a[y0][:, x1] * fx3
    bottom = a[y1][:, x0] * (1 - fx3) + a[y1][:, x1] * fx3
    out = top * (1 - fy[:, None, None]) + bottom * fy[:, None, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def network_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (1, 3, height, width) float32: resized, (x - 127) / 128, channels first."""
    x = (resize_bilinear(rgb, width, height).astype(np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def batch(paths, width: int, height: int) -> np.ndarray:
    return np.concatenate([network_input(decode_rgb(Path(p)), width, height) for p in paths], 0)


def agreement(ours: np.ndarray, ref: np.ndarray) -> dict:
    """How far ``ours`` is from ``ref`` in 8-bit steps: the largest difference, the mean signed
    difference (per channel) and the share of values that differ at all."""
    d = (ours.astype(np.float64) - ref.astype(np.float64)) / STEP
    return {"max_steps": float(np.abs(d).max()), "mean_steps": [float(d[:, c].mean()) for c in range(d.shape[1])],
            "differing": float((np.abs(d) > 1e-3).mean())}


def check(ours: np.ndarray, ref: np.ndarray) -> dict:
    """Assert that ``ours`` equals the reference up to OpenCV's fixed-point rounding (see above)."""
    assert ours.shape == ref.shape and ours.dtype == np.float32, (ours.shape, ours.dtype, ref.shape)
    a = agreement(ours, ref)
    assert a["max_steps"] <= 1.0 + 1e-3, a  # a swapped channel, another resize or normalisation: many steps
    assert a["differing"] <= 0.2, a  # rounding touches few values
    assert all(abs(m) <= 0.25 for m in a["mean_steps"]), a  # no drift: a mean or scale off by one step is caught
    return a
