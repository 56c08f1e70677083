"""The batch of the 16 pinned photos: equal to the independent reference (tests/preprocess_reference.py)
and pinned by its sha256 (float32 bytes of the (16, 3, H, W) batch, photos in name order).

The sha256 changes only when the decoded pixels or the resize change: a new OpenCV in the toolchain
lock may move it (then check the reference agreement still holds and record the new value with the
lock change); any change of our pre-processing code moves it.
"""
from __future__ import annotations

import hashlib

import pytest

import preprocess_reference as R
from conftest import IMAGES
from zoo.core.images import load_batch

pytestmark = pytest.mark.smoke

BATCH_SHA256 = {
    (320, 240): "4e159c847f8a6becd3ccd558416280fe2e2fdb653e32c4e1e98702818531a1d9",
    (640, 480): "0d1afcb3d6cf4a73d6d1abe49180384a26ad8c1c1288f0a78bf7685c3e744438",
}


@pytest.mark.parametrize("size", sorted(BATCH_SHA256))
def test_pinned_photos_batch(size):
    paths = sorted(IMAGES.glob("*.jpg"))
    assert len(paths) == 16
    x, names, _ = load_batch(paths, *size)
    assert [p.name for p in names] == [p.name for p in paths]
    agreement = R.check(x, R.batch(paths, *size))
    assert hashlib.sha256(x.tobytes()).hexdigest() == BATCH_SHA256[size], agreement
