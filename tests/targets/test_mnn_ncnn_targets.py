"""Issues 4 and 5: our exported MNN and ncnn files against the original's, in their own runtimes.

(The toolkits' own tests — no pip/network for MNN, ncnn's int8 format and the proof that ncnn
executes int8 layers — are in test_mnn_tools.py and test_ncnn_tools.py; parity of every
precision for every model id is in test_targets.py.)
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REFERENCE, assert_built
from zoo.exporters import get_target


def _need(target):
    t = get_target(target)
    if not t.available():
        pytest.skip(f"{target} runtime not installed: {t.missing()}")


def test_mnn_fp32_equals_the_original_file(export_dir, batch_cache):
    _need("mnn")
    from zoo.exporters.mnn.runner import MnnNet

    folder, manifest, cp = export_dir("rfb-320", "mnn", "fp32,fp16,int8")
    assert_built(manifest, cp)
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    x, _, _ = batch_cache((320, 240))
    with MnnNet(REFERENCE / "mnn" / "RFB-320.mnn") as theirs, MnnNet(folder / fp32["primary"]) as ours:
        a, b = theirs.infer(x), ours.infer(x)
    for name in ("scores", "boxes"):
        np.testing.assert_allclose(b[name], a[name], atol=1e-4)


def test_mnn_int8_runs_where_the_originals_do_not(export_dir, batch_cache):
    _need("mnn")
    from zoo.exporters.mnn.runner import MnnNet
    from zoo.core.errors import ZooError

    folder, manifest, _ = export_dir("rfb-320", "mnn", "fp32,fp16,int8")
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert int8["parity"]["passed"] and int8["meta"]["head"] == "raw"
    x, _, _ = batch_cache((320, 240))
    with MnnNet(folder / int8["primary"]) as ours:
        assert ours.infer(x[:1])["scores"].shape == (1, 4420, 2)
    with pytest.raises(ZooError, match="EltwiseInt8"):
        with MnnNet(REFERENCE / "mnn" / "RFB-320-quant-ADMM-32.mnn") as theirs:
            theirs.infer(x[:1])


def test_mnn_metadata_in_bizcode(export_dir):
    _need("mnn")
    import json

    from zoo.exporters.mnn.convert import read_biz_code

    folder, manifest, _ = export_dir("rfb-320", "mnn", "fp32,fp16,int8")
    for a in manifest["artifacts"]:
        biz = json.loads(read_biz_code(folder / a["primary"]))
        assert biz["model_id"] == "rfb-320" and biz["head"] == "raw" and biz["prior_count"] == 4420


def test_ncnn_fp32_equals_the_original_files(export_dir, batch_cache):
    _need("ncnn")
    from zoo.exporters.ncnn.runner import NcnnNet

    folder, manifest, cp = export_dir("rfb-320", "ncnn", "fp32,fp16,int8")
    assert_built(manifest, cp)
    fp32 = next(a for a in manifest["artifacts"] if a["precision"] == "fp32")
    io = fp32["meta"]["io"]
    x, _, _ = batch_cache((320, 240))
    p = folder / fp32["primary"]
    with NcnnNet(REFERENCE / "ncnn" / "RFB-320.param", REFERENCE / "ncnn" / "RFB-320.bin", input_blob="input",
                 output_blobs=["scores", "boxes"], input_shape=(3, 240, 320)) as theirs, \
            NcnnNet(p, p.with_suffix(".bin"), input_blob=io["input_blob"], output_blobs=list(io["output_blobs"].values())) as ours:
        a, b = theirs.infer(x), ours.infer(x)
    np.testing.assert_allclose(b[io["output_blobs"]["scores"]].reshape(a["scores"].shape), a["scores"], atol=1e-4)
    np.testing.assert_allclose(b[io["output_blobs"]["boxes"]].reshape(a["boxes"].shape), a["boxes"], atol=1e-4)


def test_ncnn_int8_artifact_has_int8_layers(export_dir):
    _need("ncnn")
    from zoo.exporters.ncnn.param import int8_layers

    folder, manifest, _ = export_dir("rfb-320", "ncnn", "fp32,fp16,int8")
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert int8["meta"]["io"]["int8"] is True
    assert len(int8_layers(folder / int8["primary"])) >= 20
    assert not any(f["path"].endswith((".py", ".onnx", ".pnnx.param", ".pnnx.bin")) for a in manifest["artifacts"] for f in a["files"])


def test_bad_calibration_folder_is_a_clear_error(tmp_path):
    from conftest import assert_clean_error, zoo

    (tmp_path / "empty").mkdir()
    cp = zoo("export", "--model", "rfb-320", "--to", "mnn", "--precision", "int8", "--calib", tmp_path / "empty", "--out", tmp_path / "o")
    assert_clean_error(cp, "--calib", "no images")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not an image")
    cp = zoo("export", "--model", "rfb-320", "--to", "mnn", "--precision", "int8", "--calib", tmp_path / "bad", "--out", tmp_path / "o")
    assert_clean_error(cp, "--calib", "cannot read")
    assert not (tmp_path / "o").exists()
