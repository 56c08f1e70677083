"""The shared PyTorch reference (zoo.pipeline.reference): a cached file is input. Whatever is done to
it, reading gives back exactly what was written, or nothing (then it is recomputed); never other
numbers. And the key changes with everything the outputs depend on."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.pipeline.reference import read_reference, reference_key, write_reference

N, P, K = 2, 30, 2


def _outputs(head: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"scores": rng.random((N, P, K), dtype=np.float32), "boxes": rng.random((N, P, 4), dtype=np.float32)}
    if head == "raw":
        out["locations"] = rng.standard_normal((N, P, 4)).astype(np.float32)
    return out


@pytest.mark.parametrize("head", ["raw", "decoded"])
def test_round_trip_and_refusals(tmp_path, head):
    out = _outputs(head)
    path = tmp_path / "r.npz"
    write_reference(path, "k1", out)
    got = read_reference(path, "k1", head, N, P, K)
    assert got is not None and set(got) == set(out)
    for k in out:
        np.testing.assert_array_equal(got[k], out[k])
    assert read_reference(path, "other-key", head, N, P, K) is None  # another model, images or version
    assert read_reference(path, "k1", head, N + 1, P, K) is None  # another number of images
    assert read_reference(path, "k1", head, N, P + 1, K) is None  # another input size
    assert read_reference(path, "k1", "decoded" if head == "raw" else "raw", N, P, K) is None
    assert read_reference(tmp_path / "missing.npz", "k1", head, N, P, K) is None
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]  # written atomically: no temporary left


def test_non_finite_values_are_refused(tmp_path):
    out = _outputs("decoded")
    out["scores"][0, 0, 0] = np.nan
    write_reference(tmp_path / "r.npz", "k", out)
    assert read_reference(tmp_path / "r.npz", "k", "decoded", N, P, K) is None


def test_the_key_covers_what_the_outputs_depend_on():
    meta = {"arch": "RFB", "input_size": [320, 240], "labels": ["BACKGROUND", "face"], "num_classes": 2}
    base = reference_key("a" * 64, meta, "raw", ["1", "2"])
    assert base == reference_key("a" * 64, dict(meta), "raw", ["1", "2"])
    assert base != reference_key("b" * 64, meta, "raw", ["1", "2"])
    assert base != reference_key("a" * 64, {**meta, "input_size": [640, 480]}, "raw", ["1", "2"])
    assert base != reference_key("a" * 64, {**meta, "arch": "slim"}, "raw", ["1", "2"])
    assert base != reference_key("a" * 64, meta, "decoded", ["1", "2"])
    assert base != reference_key("a" * 64, meta, "raw", ["2", "1"])
    assert base != reference_key("a" * 64, meta, "raw", ["1"])


_WRITTEN = {}


def _original(tmp_path_factory) -> bytes:
    if "raw" not in _WRITTEN:
        p = tmp_path_factory.mktemp("ref") / "r.npz"
        write_reference(p, "key", _outputs("raw"))
        _WRITTEN["raw"] = p.read_bytes()
    return _WRITTEN["raw"]


@fuzz(60)
@given(data=st.data())
def test_a_damaged_cache_file_reads_as_the_original_or_nothing(tmp_path_factory, data):
    blob = bytearray(_original(tmp_path_factory))
    kind = data.draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob = bytearray(data.draw(st.binary(max_size=512)))
    p = tmp_path_factory.mktemp("bad") / "r.npz"
    p.write_bytes(bytes(blob))
    got = read_reference(p, "key", "raw", N, P, K)
    if got is not None:
        want = _outputs("raw")
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
