"""The model-level int8 sensitivity analysis (zoo/core/model/sensitivity.py)."""
from __future__ import annotations

import numpy as np
import pytest

from zoo.core.model import sensitivity as S


@pytest.mark.parametrize("node,module", [
    ("/base_net.0/base_net.0.0/Conv", "base_net.0.0"),
    ("/base_net.7/branch0/branch0.0/conv/Conv", "base_net.7.branch0.0.conv"),
    ("/base_net.7/ConvLinear/conv/Conv", "base_net.7.ConvLinear.conv"),
    ("/extras.0/extras.0.2/extras.0.2.0/Conv", "extras.0.2.0"),
    ("/classification_headers.3/Conv", "classification_headers.3"),
])
def test_onnx_node_names_map_to_the_pytorch_modules(node, module):
    assert S.onnx_module_name(node) == module


def test_names_not_of_the_exported_form_map_to_nothing():
    assert S.onnx_module_name("Conv_12") is None
    assert S.onnx_module_name("") is None


def _analysis(errors, params):
    return {"layers": [{"module": f"m{i}", "params": p, "error": e} for i, (e, p) in enumerate(zip(errors, params))]}


def test_choose_keeps_the_most_sensitive_within_ratio_and_budget():
    a = _analysis([1.0, 0.5, 0.2, 0.05], [10, 10, 10, 10])
    assert S.choose(a, keep_ratio=0.1, max_float_params=1.0) == ["m0", "m1", "m2"]
    assert S.choose(a, keep_ratio=0.4, max_float_params=1.0) == ["m0", "m1"]
    # budget: 25% of 40 weights = 10: only the worst one fits
    assert S.choose(a, keep_ratio=0.1, max_float_params=0.25) == ["m0"]
    # a layer over the budget is passed over, a smaller one after it still fits
    b = _analysis([1.0, 0.9, 0.8], [5, 100, 5])
    assert S.choose(b, keep_ratio=0.1, max_float_params=0.1) == ["m0", "m2"]
    assert S.choose(_analysis([0.0, 0.0], [1, 1])) == []
    assert S.choose({"layers": []}) == []


def test_output_error_is_zero_for_equal_outputs_and_grows_with_the_change():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (2, 50, 1)).astype(np.float32)
    scores = np.concatenate([1 - p, p], -1)
    loc = rng.normal(size=(2, 50, 4)).astype(np.float32)
    assert S.output_error((scores, loc), (scores, loc)) == 0.0
    small = S.output_error((scores, loc), (scores, loc + 0.01))
    big = S.output_error((scores, loc), (scores, loc + 0.1))
    assert 0 < small < big


def test_analysis_of_a_real_network_names_every_convolution_in_execution_order():
    torch = pytest.importorskip("torch")
    from zoo.core.model.nets import UltraFace

    torch.manual_seed(0)
    net = UltraFace("slim", 2, 160, 120, head="raw").eval()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 120, 160)).astype(np.float32)
    a = S.analyse(net, x)
    convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(l["module"] for l in a["layers"]) == sorted(convs)
    assert a["layers"][0]["module"] == "base_net.0.0"  # the stem runs first
    assert all(l["error"] >= 0 for l in a["layers"]) and a["all_int8_error"] > 0
    assert a["images"] == 3



@pytest.mark.parametrize("arch", ["slim", "rfb"])
def test_the_analysis_from_each_stage_is_bit_for_bit_the_whole_pass(arch):
    """Each layer's run starts at its stage (UltraFace.forward_from) instead of the input: outputs and
    errors must be exactly those of the whole forward pass with that one layer quantized."""
    torch = pytest.importorskip("torch")
    from zoo.core.model.nets import UltraFace

    torch.manual_seed(1)
    net = UltraFace(arch, 2, 160, 120, head="raw").eval()
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 3, 120, 160)).astype(np.float32))
    keep: list = []
    with torch.no_grad():
        whole = net(x)
        from_zero = net.forward_from(0, x, [], [], keep=keep)
        assert all(torch.equal(a, b) for a, b in zip(whole, from_zero))
        for s in range(len(keep)):  # resuming at any stage gives the whole pass's outputs
            assert all(torch.equal(a, b) for a, b in zip(whole, net.forward_from(s, *keep[s])))
    names = S._convs_in_order(net, x)
    ranges = S._input_ranges(net, x, names)
    ref = S._run(net, x, [], ranges)
    for name in names:
        full = S._run(net, x, [name], ranges)
        s = net.stage_of(name)
        part = S._run(net, x, [name], ranges, start=(s, *keep[s]))
        assert all(np.array_equal(a, b) for a, b in zip(full, part)), name
        assert S.output_error(ref, full) == S.output_error(ref, part)
    a = S.analyse(net, x.numpy())
    assert [l["error"] for l in a["layers"]] == [S.output_error(ref, S._run(net, x, [n], ranges)) for n in names]
    with pytest.raises(ValueError):
        net.stage_of("priors")



# ---- the cached analysis (zoo/pipeline/analysis.py): our own file, read back as input ----

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzzing import fuzz  # noqa: E402
from zoo.pipeline.analysis import read_cached, valid_analysis  # noqa: E402

KEY = "k" * 64
GOOD = {"key": KEY, "layers": [{"module": "base_net.0.0", "params": 432, "error": 0.001},
                               {"module": "base_net.1.0", "params": 144, "error": 0.003}],
        "float_kept": ["base_net.1.0"], "images": 8, "all_int8_error": 0.005}


def test_a_well_formed_analysis_for_its_key_is_reused(tmp_path):
    import json

    p = tmp_path / "a.json"
    p.write_text(json.dumps(GOOD))
    assert read_cached(p, KEY) == GOOD
    assert read_cached(p, "x" * 64) is None  # another checkpoint, calibration set or rule
    assert read_cached(tmp_path / "missing.json", KEY) is None


@pytest.mark.parametrize("bad", [
    {**GOOD, "key": None},
    {**GOOD, "layers": []},
    {**GOOD, "layers": "base_net"},
    {**GOOD, "float_kept": ["not.a.layer"]},
    {**GOOD, "float_kept": "base_net.1.0"},
    {**GOOD, "layers": [{"module": "m", "params": True, "error": 0.1}]},
    {**GOOD, "layers": [{"module": "m", "params": 3, "error": float("nan")}], "float_kept": []},
    {**GOOD, "layers": [{"module": "m", "params": 3, "error": -1.0}], "float_kept": []},
    {**GOOD, "layers": [{"module": "", "params": 3, "error": 0.1}], "float_kept": []},
    [GOOD],
])
def test_a_malformed_analysis_is_never_trusted(bad):
    assert not valid_analysis(bad, KEY)


@fuzz(200)
@given(data=st.data())
def test_a_damaged_cache_file_is_ignored_never_raised(tmp_path_factory, data):
    import json

    raw = bytearray(json.dumps(GOOD).encode())
    kind = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    else:
        raw = bytearray(data.draw(st.binary(max_size=300)))
    p = tmp_path_factory.mktemp("cache") / "a.json"
    p.write_bytes(bytes(raw))
    got = read_cached(p, KEY)
    assert got is None or valid_analysis(got, KEY)  # a flip inside a number may still be a valid analysis
