"""The edges of zoo.core.integrity, one test per rule (issue 40: what the mutation run of the module left alive).

Each test sits on one side of one threshold or one clause of a rule, with values worked out by hand from the
rule's docstring: the hash and size fields of a sidecar, the path rule of its files, the message of an
unreadable file, and the consistency of outputs with the declared head (raw offsets that look like corners,
decoded corners around their priors, absurd boxes), with priors whose width and height differ (320x240).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zoo.core import integrity
from zoo.core.errors import ZooError
from zoo.core.integrity import CORRUPT, MISMATCH, output_problem, sidecar_files, verify_artifact
from zoo.core.meta import ArtifactMeta
from zoo.core.model import priors as P
from zoo.exporters.base import write_sidecar

PRIORS = P.generate_priors(320, 240)  # (cx, cy, w, h), w != h
N = len(PRIORS)


def meta(**kw) -> ArtifactMeta:
    d = dict(model_id="slim-320", arch="slim", input_size=(320, 240), labels=("BACKGROUND", "face"), head="raw",
             checkpoint_sha256="0" * 64, target="ncnn")
    d.update(kw)
    return ArtifactMeta(**d)


def artifact(tmp: Path) -> Path:
    (tmp / "m.param").write_bytes(b"7767517\n" + b"x" * 100)
    (tmp / "m.bin").write_bytes(b"\0" * 64)
    write_sidecar(tmp, Path("m.param"), meta(), [Path("m.param"), Path("m.bin")])
    return tmp / "m.param"


def with_files(tmp: Path, files) -> Path:
    primary = artifact(tmp)
    d = json.loads((tmp / "m.json").read_text()) | {"files": files}
    (tmp / "m.json").write_text(json.dumps(d))
    return primary


# --------------------------------------------------------------------------- sidecar files

def test_the_sidecar_listed_first_does_not_end_the_list(tmp_path):
    (tmp_path / "m.param").write_bytes(b"a")
    (tmp_path / "m.bin").write_bytes(b"bb")
    files = sidecar_files(tmp_path, Path("m.param"), [Path("m.json"), Path("m.param"), Path("m.bin")])
    assert sorted(files) == ["m.bin", "m.param"] and files["m.bin"]["bytes"] == 2


def test_a_file_outside_the_sidecars_folder_is_refused_naming_both(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ZooError, match=r"^artifact file m\.bin is not in \(or below\) its sidecar's folder sub$"):
        sidecar_files(tmp_path, Path("sub/m.param"), [Path("m.bin")])


@pytest.mark.parametrize("files,message", [
    (["m.param"], "'files' must be a non-empty object {name: {sha256, bytes}}"),                   # a list, not empty
    ({"m.param": "f" * 64}, "the sha256 of 'm.param' is not 64 hex digits"),  # not an object
    ({"m.param": {"sha256": "abc", "bytes": 1}}, "the sha256 of 'm.param' is not 64 hex digits"),
    ({"m.param": {"sha256": "X" * 64, "bytes": 1}}, "the sha256 of 'm.param' is not 64 hex digits"),
    ({"m.param": {"sha256": "A" * 64, "bytes": 1}}, "the sha256 of 'm.param' is not 64 hex digits"),
    ({"m.param": {"sha256": "0" * 64, "bytes": True}}, "the size of 'm.param' is not a non-negative integer"),
    ({"m.param": {"sha256": "0" * 64, "bytes": "12"}}, "the size of 'm.param' is not a non-negative integer"),
    ({"m.param": {"sha256": "0" * 64, "bytes": -1}}, "the size of 'm.param' is not a non-negative integer"),
    ({"m.bin": {"sha256": "0" * 64, "bytes": 64}}, "'files' records no hash for m.param, the file it describes"),
])
def test_each_malformed_field_is_refused_with_its_own_line(tmp_path, files, message):
    primary = with_files(tmp_path, files)
    with pytest.raises(ZooError) as e:
        verify_artifact(primary)
    assert str(e.value) == f"the metadata sidecar {tmp_path / 'm.json'}: {message}"


def test_an_empty_file_of_zero_bytes_verifies(tmp_path):
    primary = artifact(tmp_path)
    (tmp_path / "m.bin").write_bytes(b"")
    write_sidecar(tmp_path, Path("m.param"), meta(), [Path("m.param"), Path("m.bin")])
    assert json.loads((tmp_path / "m.json").read_text())["files"]["m.bin"]["bytes"] == 0
    assert verify_artifact(primary) == "m.json"


def test_no_sidecar_and_no_manifest_means_nothing_to_verify(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert verify_artifact(tmp_path / "m.onnx") == ""


def test_an_unreadable_file_names_the_reason(tmp_path, monkeypatch):
    (tmp_path / "m.bin").write_bytes(b"x")

    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(integrity, "sha256_file", refuse)
    assert integrity.file_mismatch(tmp_path / "m.bin", "0" * 64, 1, "x") == f"{tmp_path / 'm.bin'}: unreadable (Permission denied)"


# --------------------------------------------------------------------------- outputs against the declared head

def scores(n: int = N, batch: int = 1) -> np.ndarray:
    s = np.full((batch, n, 2), 0.5, np.float32)
    return s


def corners(shift=(0.0, 0.0), ratio=(1.0, 1.0), batch: int = 1) -> np.ndarray:
    """Decoded corners: each prior's box moved by ``shift`` prior sizes (w, h) and scaled by ``ratio``."""
    cx = PRIORS[:, 0] + shift[0] * PRIORS[:, 2]
    cy = PRIORS[:, 1] + shift[1] * PRIORS[:, 3]
    w, h = PRIORS[:, 2] * ratio[0], PRIORS[:, 3] * ratio[1]
    b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).astype(np.float32)
    return np.repeat(b[None], batch, 0)


def decoded(boxes, batch: int = 1):
    return output_problem({"scores": scores(batch=batch), "boxes": boxes}, meta(head="decoded"))


def raw(loc_rows):
    """A raw head whose locations are ``loc_rows`` (N, 4), boxes the decoding of small offsets (plausible)."""
    return output_problem({"scores": scores(), "boxes": corners(), "locations": np.asarray(loc_rows, np.float32)[None]},
                          meta(head="raw"))


def test_the_messages_name_what_is_wrong():
    nan = corners()
    nan[0, 5, 2] = np.nan
    assert decoded(nan) == (CORRUPT, "its outputs contain NaN/inf")
    assert output_problem({"detections": [np.array([[0, 0, 1, np.nan, 0.9, 1]])]}, meta(head="nms")) == (
        CORRUPT, "its detections contain NaN/inf")
    assert raw(np.tile([0.2, 0.2, 0.8, 0.8], (N, 1))) == (
        MISMATCH, "its box output holds decoded corners, but its metadata says the head is raw")
    assert decoded(corners(shift=(3, 3))) == (
        MISMATCH, "its box output is not decoded corners around the priors, but its metadata says the head is decoded")


def test_a_batch_of_two_is_checked_per_prior():
    assert decoded(corners(batch=2), batch=2) is None
    far = corners(batch=2)
    far[1, 10] += 0.6  # 0.6 of the image: many prior sizes off, in the second image only
    assert decoded(far, batch=2)[0] == CORRUPT


@pytest.mark.parametrize("row,is_corner", [
    ([0.0, 0.0, 0.5, 0.5], True),      # 0 is inside [-0.01, 1.01]
    ([0.5, 0.1, 0.5, 0.7], True),      # x2 == x1 is still ordered
    ([0.1, 0.5, 0.7, 0.5], True),      # y2 == y1
    ([0.3, 0.6, 0.5, 0.9], True),      # x2 >= x1 (x2 < y1 does not matter)
    ([-0.5, -0.5, 0.5, 0.5], False),   # below -0.01
    ([0.5, 0.5, 1.5, 1.5], False),     # above 1.01
    ([5.0, 5.0, 6.0, 6.0], False),     # ordered, far out
    ([0.6, 0.1, 0.5, 0.7], False),     # x2 < x1 (y2 >= x1 does not matter)
    ([0.1, 0.6, 0.7, 0.5], False),     # y2 < y1
])
def test_raw_offsets_that_look_like_corners(row, is_corner):
    got = raw(np.tile(row, (N, 1)))
    assert (got is not None and got[0] == MISMATCH) is is_corner, got


def test_raw_offsets_are_corners_only_when_more_than_half_look_like_them():
    rows = np.tile([-3.0, -3.0, -2.0, -2.0], (N, 1))
    rows[: N // 2] = [0.2, 0.2, 0.8, 0.8]
    assert raw(rows) is None  # exactly half
    rows[N // 2] = [0.2, 0.2, 0.8, 0.8]
    assert raw(rows)[0] == MISMATCH


@pytest.mark.parametrize("shift,expected", [
    ((0.0, 0.0), None),
    ((0.9, 0.9), None),
    ((1.5, 1.5), MISMATCH),            # more than one prior size off: not around the priors
    ((1.2, 0.9), MISMATCH),            # x in prior widths (w != h): median of (1.2, 0.9) is 1.05
])
def test_decoded_corners_lie_around_their_priors(shift, expected):
    got = decoded(corners(shift=shift))
    assert (got and got[0]) == expected, got


def test_decoded_boxes_need_a_positive_size_in_most_rows():
    # sizes <= 0 in 60% of the rows: not corners (the head check), before any other rule
    b = corners()
    k = int(N * 0.6)
    b[0, :k, 2:] = b[0, :k, :2]  # zero size
    assert decoded(b)[0] == MISMATCH
    # 20% of the rows inverted: still corners in most rows, but those boxes are absurd
    b = corners()
    k = int(N * 0.2)
    b[0, :k, [0, 2]] = b[0, :k, [2, 0]]
    assert decoded(b)[0] == CORRUPT
    # 20% of the rows inverted in both sides: per row, not per side or over all rows
    b = corners()
    b[0, :k] = b[0, :k][:, [2, 3, 0, 1]]
    assert decoded(b)[0] == CORRUPT
    # exactly half inverted: not "fewer than half positive", so the head holds, and the boxes are absurd
    b = corners()
    b[0, : N // 2, [0, 2]] = b[0, : N // 2, [2, 0]]
    assert decoded(b)[0] == CORRUPT


@pytest.mark.parametrize("where,expected", [
    ("off 9.5", None), ("off 10.5", CORRUPT),             # prior sizes off their prior
    ("scale 9.8", None), ("scale 10.2", CORRUPT),         # e^k times the prior's width
])
def test_absurd_boxes_start_past_ten(where, expected):
    what, k = where.split()
    k = float(k)
    b = corners()
    rows = slice(200, 203)
    if what == "off":
        b[0, rows] = corners(shift=(k, 0.0))[0, rows]
    else:
        b[0, rows] = corners(ratio=(np.exp(k), 1.0))[0, rows]
    got = decoded(b)
    assert (got and got[0]) == expected, got


def test_metadata_without_a_precision_is_checked_as_fp32():
    s = scores()
    s[0, 0] = (0.5, 0.5 + 5e-4)  # off by 5e-4: more than fp32 allows (1e-4)
    assert output_problem({"scores": s, "boxes": corners()}, meta(head="decoded", precision=""))[0] == MISMATCH
    assert output_problem({"scores": scores(), "boxes": corners()}, meta(head="decoded", precision="")) is None
