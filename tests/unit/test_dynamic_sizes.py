"""The dynamic-size constraint (zoo.core.model.priors), found from the network's arithmetic and tested at
its edges, and a dynamic artifact's place in the artifact key, the manifest and the metadata."""
from __future__ import annotations

import pytest
import torch

from zoo.core.errors import ZooError
from zoo.core.manifest import Artifact, ArtifactKey, FileEntry
from zoo.core.meta import ArtifactMeta
from zoo.core.model import priors as P
from zoo.core.model.nets import UltraFace


@pytest.mark.parametrize("arch", ["slim", "rfb"])
def test_the_network_yields_the_prior_count_at_every_size(arch):
    """Each stride-2 3x3 convolution with padding 1 maps n to ceil(n / 2): the feature maps are
    ceil(side / stride) at any size, so the raw head always has prior_count(W, H) rows."""
    net = UltraFace(arch, 2, 320, 240, head="raw").eval()
    for w, h in [(1, 1), (7, 13), (63, 64), (64, 64), (65, 129), (200, 88), (376, 280), (385, 255)]:
        with torch.no_grad():
            scores, locs = net(torch.zeros(1, 3, h, w))
        assert scores.shape[1] == locs.shape[1] == P.prior_count(w, h), (w, h)


@pytest.mark.parametrize("size,ok", [((64, 64), True), ((56, 64), False), ((4096, 64), True), ((64, 4104), False),
                                     ((648, 480), True), ((644, 480), False), ((376, 280), True), ((0, 240), False)])
def test_the_constraint_at_its_edges(size, ok):
    assert (P.size_problem(*size) is None) == ok


def test_prior_centres_follow_the_ceil_convention_at_any_size():
    pr = P.generate_priors(376, 280)
    fw, fh = P.feature_map_sizes(376, 280)[3]  # stride 64: 6 x 5 cells
    last = pr[P.prior_count(376, 280) - 1]
    assert last[0] == pytest.approx((fw - 0.5) / fw) and last[1] == pytest.approx((fh - 0.5) / fh)


def test_auto_keeps_the_aspect_ratio_with_the_trained_long_side():
    assert P.auto_size(1024, 768, (320, 240)) == (320, 240)
    assert P.auto_size(768, 1024, (320, 240)) == (240, 320)
    assert P.auto_size(720, 478, (320, 240)) == (320, 216)
    assert P.auto_size(1920, 1080, (640, 480)) == (640, 360)
    assert P.auto_size(4000, 100, (320, 240)) == (320, 64)  # never below the smallest side


def _meta(**kw):
    return ArtifactMeta("rfb-320", "rfb", (320, 240), ("BACKGROUND", "face"), "raw", "0" * 64, **kw)


def test_fixed_metadata_is_written_as_before_and_dynamic_metadata_carries_the_prior_recipe():
    assert "dynamic" not in _meta().to_dict()
    d = _meta(dynamic=P.dynamic_info()).to_dict()
    assert d["dynamic"]["strides"] == [8, 16, 32, 64] and d["dynamic"]["free_axes"] == ["N", "H", "W"]
    assert ArtifactMeta.from_dict(d).is_dynamic


def test_a_fixed_artifact_refuses_other_sizes_and_a_dynamic_one_the_constraint():
    _meta().size_for(320, 240)
    with pytest.raises(ZooError, match="--dynamic"):
        _meta().size_for(640, 480)
    dyn = _meta(dynamic=P.dynamic_info())
    dyn.size_for(640, 480)
    with pytest.raises(ZooError, match="multiple of 8"):
        dyn.size_for(642, 480)


def test_dynamic_is_part_of_the_key_and_old_entries_read_as_fixed():
    f = [FileEntry("onnx/a.onnx", "0" * 64, 1)]
    static = Artifact("rfb-320", "onnx", "fp32", "raw", "NCHW", "onnx/a.onnx", f)
    dyn = Artifact("rfb-320", "onnx", "fp32", "raw", "NCHW", "onnx/a.onnx", f, dynamic=True)
    assert static.key != dyn.key and dyn.key == ArtifactKey("rfb-320", "onnx", "fp32", "raw", True)
    assert "dynamic" not in static.to_dict() and dyn.to_dict()["dynamic"] is True
    assert list(static.to_dict())[:5] == ["model", "target", "precision", "head", "layout"]
    assert Artifact.from_dict(static.to_dict(), "x").dynamic is False
    assert Artifact.from_dict(dyn.to_dict(), "x").key == dyn.key
    with pytest.raises(ZooError, match="dynamic"):
        Artifact.from_dict({**dyn.to_dict(), "dynamic": "yes"}, "x")
