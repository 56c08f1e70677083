"""BatchNorm folded in float64 and rounded once (exporters/onnx/convert.py `refold_batchnorm`, issue 38):
the ONNX weights do not depend on the kernels torch picks for the build CPU.

The check is against a second, independent float64 fold: the TFLite plan's (exporters/tflite/network.py
reads the checkpoint with NumPy alone). Bit-for-bit equality of every convolution's weight and bias
holds only if both are the correctly rounded float32 of the same exact fold; torch.onnx's own float32
fold differed from it in 69 of rfb-320's 70 folded tensors (by 1-187 ulp).
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed")
pytest.importorskip("onnxsim", reason="onnxsim is not installed")

from zoo.checkpoints.resolve import resolve_model  # noqa: E402
from zoo.core.errors import ZooError  # noqa: E402
from zoo.core.model.layers import onnx_module_name  # noqa: E402
from zoo.exporters.onnx import convert  # noqa: E402
from zoo.exporters.tflite.network import _make_plan  # noqa: E402


def _plan_convs(plan) -> dict:
    convs = [c for layer in plan.backbone for c in (layer.convs if hasattr(layer, "convs") else
                                                    [*sum(layer.branches, []), layer.linear, layer.shortcut])]
    convs += plan.extras + sum(plan.cls_heads, []) + sum(plan.reg_heads, [])
    return {c.module: c for c in convs}


def _onnx_convs(model) -> dict:
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {onnx_module_name(n.name): [inits[i] for i in n.input[1:3]] for n in model.graph.node if n.op_type == "Conv"}


@pytest.fixture(scope="module", params=["rfb-320"])  # RFB has both patterns: Sequential(conv, bn, relu) and BasicConv
def built(request):
    r = resolve_model(request.param)
    folded = {}
    model = convert.build_onnx(r.state_dict, r.meta().with_(head="raw"), folded=folded)
    return r, model, folded


def test_every_onnx_weight_is_the_exact_fold_rounded_once(built):
    r, model, folded = built
    plan = _plan_convs(_make_plan(r.state_dict, r.spec.arch, r.spec.num_classes))
    onnx_convs = _onnx_convs(model)
    assert sorted(onnx_convs) == sorted(plan)
    n_bn = sum(1 for k in r.state_dict if k.endswith(".running_var"))
    assert len(folded) == 2 * n_bn > 20  # a weight and a bias per BatchNorm, each replaced
    for module, (w, b) in onnx_convs.items():
        c = plan[module]
        kernel = c.kernel.transpose(2, 3, 0, 1) if c.depthwise else c.kernel.transpose(3, 2, 0, 1)
        assert w.dtype == kernel.dtype == np.float32 and w.tobytes() == kernel.tobytes(), module
        assert b.tobytes() == c.bias.tobytes(), module


def test_fp16_rounds_the_float64_fold_once(built):
    from onnx import numpy_helper
    from onnxruntime.transformers.float16 import convert_np_to_float16

    _, model, folded = built
    half = {t.name: numpy_helper.to_array(t) for t in convert.to_fp16(model, folded).graph.initializer}
    for name, exact in folded.items():
        assert half[name].dtype == np.float16
        assert half[name].tobytes() == convert_np_to_float16(exact).astype(np.float16).tobytes(), name


def test_a_wrong_conv_batchnorm_pairing_is_an_error(built, monkeypatch):
    r = built[0]
    real = convert.conv_bn_pairs

    def swapped(net):  # two BatchNorms of the same width, exchanged
        pairs = real(net)
        by_width = {}
        for conv, (bn_name, c, bn) in pairs.items():
            by_width.setdefault(bn.num_features, []).append(conv)
        a, b = next(v for v in by_width.values() if len(v) > 1)[:2]
        pairs[a], pairs[b] = (pairs[b][0], pairs[a][1], pairs[b][2]), (pairs[a][0], pairs[b][1], pairs[a][2])
        return pairs

    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(built[1])
    monkeypatch.setattr(convert, "conv_bn_pairs", swapped)
    with pytest.raises(ZooError, match="is not the fold of"):
        convert.refold_batchnorm(model, r.build(head="raw"))
