"""Issue 16, hostile inputs through the real CLI: a cut checkpoint, an oversize or unreadable image and
bad --images/--calib folders end in one `error:` line, exit 1, no traceback, nothing written to --out.
The in-process sweeps are in tests/unit/test_hostile_checkpoints.py and test_hostile_images.py."""
from __future__ import annotations

import json
import shutil
import struct
import zlib

import cv2
import pytest

from conftest import CKPT_DIR, IMAGES, assert_clean_error, zoo

RFB = CKPT_DIR / "version-RFB-320.pth"


def _cut(tmp_path, n: int):
    p = tmp_path / f"rfb-{n}.pth"
    p.write_bytes(RFB.read_bytes()[:n])
    return p


def _nothing_written(out) -> None:
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.parametrize("n", [4000, 5000, 20000])
def test_detect_with_a_cut_checkpoint_is_one_line(tmp_path, n):
    out = tmp_path / "drawn"
    cp = zoo("detect", IMAGES / "1.jpg", "--checkpoint", _cut(tmp_path, n), "--arch", "rfb", "--out", out)
    assert_clean_error(cp, "truncated or corrupt", f"rfb-{n}.pth")
    _nothing_written(out)


@pytest.mark.parametrize("n", [4000, 20000])
def test_export_with_a_cut_checkpoint_is_one_line_and_writes_nothing(tmp_path, n):
    out = tmp_path / "release"
    cp = zoo("export", "--checkpoint", _cut(tmp_path, n), "--arch", "rfb", "--to", "onnx", "--out", out)
    assert_clean_error(cp, "truncated or corrupt", f"rfb-{n}.pth")
    _nothing_written(out)


def _png_declaring(w: int, h: int) -> bytes:
    """A PNG whose (well-formed) header declares w x h; its pixels are those of the shared photo's size."""
    ok, buf = cv2.imencode(".png", cv2.imread(str(IMAGES / "1.jpg"))[:8, :8])
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_detect_refuses_an_image_declaring_30000x30000_naming_the_limit(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_png_declaring(30000, 30000))
    cp = zoo("detect", big, "--model", "rfb-320", timeout=300)
    assert_clean_error(cp, "30000x30000", "100 megapixels", "big.png")


def test_detect_skips_a_folder_named_like_an_image_and_warns_on_an_empty_file(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "x.jpg").mkdir(parents=True)
    shutil.copy(IMAGES / "1.jpg", folder / "a.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    cp = zoo("detect", folder, "--model", "slim-320", "--json")
    assert cp.returncode == 1 and "Traceback" not in cp.stderr, cp.stderr
    assert "cannot read image" in cp.stderr and "empty.jpg" in cp.stderr and "x.jpg" not in cp.stderr
    assert [r["image"].rsplit("/", 1)[-1] for r in json.loads(cp.stdout)["results"]] == ["a.jpg"]


@pytest.mark.parametrize("option", ["--images", "--calib"])
def test_a_bad_parity_or_calibration_folder_is_one_line_before_any_work(tmp_path, option):
    out = tmp_path / "release"
    empty = tmp_path / "empty"
    empty.mkdir()
    others = tmp_path / "others"
    others.mkdir()
    (others / "notes.txt").write_text("no images here")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(IMAGES / "1.jpg", mixed / "a.jpg")
    (mixed / "b.jpg").write_bytes((IMAGES / "2.jpg").read_bytes()[:3000])
    for folder, needles in ((empty, ("holds no images",)), (others, ("holds no images",)),
                            (mixed, ("cannot read 1 of 2", "b.jpg"))):
        cp = zoo("export", "--model", "rfb-320", "--to", "onnx", "--precision", "int8", option, folder, "--out", out)
        assert_clean_error(cp, option, *needles)
        _nothing_written(out)
