"""The I/O contract table (zoo/core/data/io_contract.toml) parses, covers the formats the original ships,
and a malformed table is one ZooError (issue 35)."""
from __future__ import annotations

import pytest

from zoo.core.contract import CONTRACT_PATH, contract, differences, io_contract, parse
from zoo.core.errors import ZooError


def test_the_table_covers_the_originals_formats_with_one_input_and_scores_and_boxes():
    c = contract()
    assert sorted(c.formats) == ["caffe", "mnn", "ncnn", "onnx", "tflite"]
    assert (c.preprocessing.mean, c.preprocessing.scale, c.preprocessing.color) == (127.0, 1 / 128, "RGB")
    ncnn = io_contract("ncnn")
    assert ncnn.input.name == "input" and [o.name for o in ncnn.outputs] == ["scores", "boxes"]
    assert ncnn.input.resolve(320, 240, 2) == (3, 240, 320) and ncnn.outputs[0].resolve(320, 240, 2) == (4420, 2)
    t = io_contract("tflite")
    assert differences(t.ours, t.original, t.ordered) == ["input name", "output names"]
    assert [d.what for d in t.differences_for("int8-io")] == ["input name", "output names", "dtypes"]
    for f in c.formats.values():
        assert not differences(f.ours, f.original, f.ordered) or f.differences, f.target


def test_an_unknown_format_and_a_malformed_table_are_clear_errors():
    with pytest.raises(ZooError, match="no I/O contract for 'openvino'"):
        io_contract("openvino")
    text = CONTRACT_PATH.read_text()
    for bad in (text.replace('name = "boxes"', 'name = "boxes", role = "scores"', 1),
                text.replace('shape = [1, 3, "H", "W"]', 'shape = [1, 3, "Q", "W"]', 1),
                text.replace('what = "input name"', 'what = "colour"', 1), text[:200], "x = ["):
        with pytest.raises(ZooError):
            parse(bad)
