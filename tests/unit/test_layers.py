"""zoo.core.model.layers: the module-to-tensor mapping and the error metrics `zoo diff` and the int8
sensitivity analysis share (no shared material: a randomly initialised network)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.core.model.layers import ErrorStats, model_layers, onnx_origin, output_error, tensor_error
from zoo.core.model import sensitivity


@pytest.mark.parametrize("name,origin", [
    ("/base_net.1/base_net.1.0/Conv_output_0", ("base_net.1.0", "Conv")),
    ("/base_net.1/base_net.1.0/Conv", ("base_net.1.0", "Conv")),
    ("/base_net.7/branch0/branch0.1/relu/Relu_output_0", ("base_net.7.branch0.1.relu", "Relu")),
    ("/extras.0/extras.0.2/extras.0.2.2/Conv_1_output_0", ("extras.0.2.2", "Conv")),
    ("/classification_headers.3/Conv_output_0", ("classification_headers.3", "Conv")),
])
def test_onnx_origin(name, origin):
    assert onnx_origin(name) == origin


@pytest.mark.parametrize("name", ["scores", "boxes", "", "input", "/Concat_output_0",
                                  "/base_net.1/base_net.1.0/Conv_output_0_QuantizeLinear_Output", "convrelu_0", "17"])
def test_onnx_origin_refuses_other_names(name):
    assert onnx_origin(name) is None  # "/Concat_output_0": an op at the top level, in no module


def test_sensitivity_uses_the_shared_helpers():
    from zoo.core.model import layers

    assert sensitivity.onnx_module_name is layers.onnx_module_name
    assert sensitivity.output_error is layers.output_error


def test_error_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 8, 5, 5)).astype(np.float32)
    got = ref + rng.normal(scale=0.01, size=ref.shape).astype(np.float32)
    m = tensor_error(ref, got)
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    assert m["max_abs"] == pytest.approx(np.abs(g - r).max(), rel=1e-5)
    assert m["mean_abs"] == pytest.approx(np.abs(g - r).mean(), rel=1e-4)
    assert m["rel_l2"] == pytest.approx(np.linalg.norm(g - r) / np.linalg.norm(r), rel=1e-4)
    assert m["cosine"] == pytest.approx(r @ g / np.linalg.norm(r) / np.linalg.norm(g), rel=1e-6)
    # accumulated image by image = computed on the whole batch
    acc = ErrorStats().add(ref[:1], got[:1]).add(ref[1:], got[1:]).result()
    assert acc == pytest.approx(m, rel=1e-5)
    assert tensor_error(ref, ref) == {"max_abs": 0.0, "mean_abs": 0.0, "rel_l2": 0.0, "cosine": pytest.approx(1.0)}
    bad = got.copy()
    bad[0, 0, 0, 0] = np.nan
    assert tensor_error(ref, bad)["rel_l2"] == math.inf
    with pytest.raises(ValueError):
        ErrorStats().add(ref, got[:1])


def test_output_error_is_zero_on_equal_outputs():
    s = np.tile(np.array([[0.2, 0.8]], np.float32), (1, 10, 1))
    loc = np.zeros((1, 10, 4), np.float32)
    assert output_error((s, loc), (s, loc)) == 0.0


@pytest.fixture(scope="module", params=["rfb", "slim"])
def net_layers(request):
    import torch

    from zoo.core.model.nets import UltraFace

    torch.manual_seed(0)
    net = UltraFace(request.param, 2, 160, 120, head="raw").eval()
    return request.param, model_layers(net, np.zeros((1, 3, 120, 160), np.float32))


def test_model_layers_groups(net_layers):
    arch, L = net_layers
    assert len(L.convs()) == (52 if arch == "rfb" else 42)
    # BatchNorm folded into the conv before it; the ReLU after it fused too
    assert L.resolve(("base_net.1.0", "Conv")) == "base_net.1.1"
    assert L.resolve(("base_net.1.0", "ConvRelu")) == "base_net.1.2"
    assert L.resolve(("base_net.1.2", "Relu")) == "base_net.1.2"
    # no BatchNorm: the conv itself; its ReLU is the next module of the Sequential (extras.0.1)
    assert L.resolve(("extras.0.0", "Conv")) == "extras.0.0"
    assert L.resolve(("extras.0.0", "ConvRelu")) == "extras.0.1"
    # a sep_conv's pointwise conv, whose ReLU lives outside its Sequential
    assert L.resolve(("extras.0.2.2", "ConvRelu")) == "extras.0.3"
    # a head conv has nothing after it
    assert L.resolve(("regression_headers.0.2", "ConvRelu")) == "regression_headers.0.2"
    # not a conv, not a ReLU, or not a module: nothing to compare with
    assert L.resolve(("base_net.1.1", "Conv")) is None
    assert L.resolve(("base_net.1", "Relu")) is None
    assert L.resolve(("no.such.module", "Conv")) is None
    assert L.resolve(None) is None
    if arch == "rfb":
        assert L.resolve(("base_net.7.branch0.0.conv", "ConvRelu")) == "base_net.7.branch0.0.bn"  # relu=False
        assert L.resolve(("base_net.7.relu", "Relu")) == "base_net.7.relu"
        assert L.producer["base_net.7.relu"] is None  # its input is an addition: no module


def test_feeding_walks_back_to_a_mapped_layer(net_layers):
    _, L = net_layers
    mapped = {"base_net.0.2", "base_net.1.2", "base_net.1.5"}
    assert L.feeding("base_net.1.5", mapped) == "base_net.1.2"
    assert L.feeding("base_net.1.2", mapped) == "base_net.0.2"
    assert L.feeding("base_net.0.2", mapped) is None


def test_a_failing_export_line_suggests_zoo_diff(tmp_path):
    """`zoo export`'s FAIL line for an artifact that failed parity ends with its `zoo diff` command
    (only when the file is there to compare)."""
    from zoo.cli.export import parity_line
    from zoo.core.manifest import Artifact

    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "m.onnx").write_bytes(b"x")
    parity = {"passed": False, "failures": ["output 'scores' diverges"], "outputs": {}, "detections": {}}
    bad = Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/m.onnx", [], parity=parity)
    line = parity_line(bad, folder=tmp_path)
    assert line.startswith("FAIL") and line.rstrip().endswith(f"zoo diff {tmp_path / 'onnx' / 'm.onnx'}")
    gone = Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/gone.onnx", [], parity=parity)
    assert "zoo diff" not in parity_line(gone, folder=tmp_path)
    ok = Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/m.onnx", [], parity={**parity, "passed": True, "failures": []})
    assert "zoo diff" not in parity_line(ok, folder=tmp_path)
