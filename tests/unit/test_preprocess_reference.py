"""Pre-processing against a reference written independently of zoo.core (tests/preprocess_reference.py:
Pillow's decoding, a NumPy bilinear resize, the model's documented normalisation).

Every parity comparison feeds both sides through our own `load_batch`, so a fault there (channels the
wrong way round, another normalisation, another resize) is invisible to parity: these tests are what
catches it. The built-in photos need no shared material; the 16 pinned photos are checked (and their
batch pinned by its sha256) by the smoke test tests/pipeline/test_preprocessing.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import preprocess_reference as R
from zoo.core.images import builtin_images, load_batch, read_bgr
from zoo.core.model.processing import preprocess


def _png(path, rgb: np.ndarray):
    from PIL import Image

    Image.fromarray(rgb, "RGB").save(path)
    return path


def test_a_solid_colour_lands_exactly_in_rgb_order(tmp_path):
    """R, G, B = 200, 100, 50 gives channels (200-127)/128, (100-127)/128, (50-127)/128, at every pixel and
    any size: exact, no rounding involved."""
    p = _png(tmp_path / "solid.png", np.broadcast_to(np.array([200, 100, 50], np.uint8), (40, 50, 3)).copy())
    for w, h in ((64, 48), (320, 240), (24, 16)):
        x, _, sizes = load_batch([p], w, h)
        assert x.shape == (1, 3, h, w) and x.dtype == np.float32 and sizes == [(50, 40)]
        for c, v in enumerate((200, 100, 50)):
            assert np.all(x[0, c] == np.float32((v - 127) / 128)), (c, np.unique(x[0, c]))


def test_channels_and_axes_of_a_gradient(tmp_path):
    """Red grows along x, green along y, blue is their mix: a transposed, flipped or channel-swapped
    input differs from the reference by many steps."""
    h, w = 90, 130
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], -1).astype(np.uint8)
    p = _png(tmp_path / "grad.png", rgb)
    for w2, h2 in ((64, 48), (200, 152), (320, 240)):
        R.check(load_batch([p], w2, h2)[0], R.batch([p], w2, h2))


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (200, 152)])
def test_builtin_photos_match_the_independent_reference(size):
    paths = builtin_images()
    assert len(paths) >= 3
    x, names, sizes = load_batch(paths, *size)
    R.check(x, R.batch(paths, *size))
    assert sizes == [R.decode_rgb(p).shape[1::-1] for p in paths]
    # the single-image path (zoo detect, the runners' callers) is the batch's
    for i, p in enumerate(paths):
        assert np.array_equal(preprocess(read_bgr(p), *size)[0], x[i])


def test_the_reference_itself_tells_a_swap_and_a_shift():
    """The measuring stick has teeth: BGR, a mean off by one and nearest-neighbour resizing all fail it."""
    import cv2

    p = builtin_images()[0]
    ref = R.batch([p], 320, 240)
    bgr = read_bgr(p)
    swapped = ((cv2.resize(bgr, (320, 240)).astype(np.float32) - 127) / 128).transpose(2, 0, 1)[None]
    shifted = ref - np.float32(1 / 128)
    nearest = ((cv2.resize(bgr[..., ::-1], (320, 240), interpolation=cv2.INTER_NEAREST).astype(np.float32) - 127)
               / 128).transpose(2, 0, 1)[None]
    for bad in (swapped, shifted, nearest):
        with pytest.raises(AssertionError):
            R.check(np.ascontiguousarray(bad, dtype=np.float32), ref)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4), (8, 8, 1)])
def test_preprocess_refuses_what_is_not_a_bgr_image(shape):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) BGR image, got shape"):
        preprocess(np.zeros(shape, np.uint8), 16, 16)
