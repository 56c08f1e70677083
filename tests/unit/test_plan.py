"""The planner: names checked with suggestions, flavours expanded, ONNX first, shards partition the matrix."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.exporters import check_runtime_name, get_target, runtime_names, target_names
from zoo.core.errors import ZooError
from zoo.pipeline.plan import make_plan, matrix, parse_shard, shard_of

ALL = target_names()


def test_unknown_names_are_refused_with_a_suggestion():
    with pytest.raises(ZooError, match=r"unknown target 'mnm' \(did you mean 'mnn'\?\); valid targets: onnx"):
        make_plan(["mnm"], ["fp32"], None)
    with pytest.raises(ZooError, match=r"unknown precision 'fp61' \(did you mean 'fp16'\?\)"):
        make_plan(["onnx"], ["fp61"], None)
    with pytest.raises(ZooError, match="unknown head 'boxes'"):
        make_plan(["onnx"], ["fp32"], "boxes")
    with pytest.raises(ZooError, match="--nms .* add onnx"):
        make_plan(["mnn"], ["fp32"], None, nms=True)


def test_unknown_runtime_names_the_available_ones():
    with pytest.raises(ZooError, match=r"unknown runtime 'opencvv' \(did you mean 'opencv'\?\); available runtimes: onnxruntime, opencv"):
        check_runtime_name("opencvv")
    assert set(runtime_names()) >= {"onnxruntime", "opencv", "mnn", "ncnn", "litert", "tensorflow", "opencv-caffe"}
    with pytest.raises(ZooError, match="target 'mnn' has no runtime 'opencv'; it has: mnn"):
        get_target("mnn").check_runtime("opencv")
    assert get_target("onnx").check_runtime(None) == "onnxruntime"


def test_every_target_declares_runtimes_and_a_consistent_interface():
    for t in map(get_target, ALL):
        assert t.runtimes, t.name
        assert t.precisions and set(t.precisions) <= {"fp32", "fp16", "int8"}
        assert t.suffixes and all(s.startswith(".") for s in t.suffixes)
        assert t.source in ("torch", "onnx") and t.layout in ("NCHW", "NHWC")
        assert type(t).make_runner is not type(t).__mro__[-2].make_runner, f"{t.name} implements no runner"


def test_onnx_first_and_flavours_expanded():
    p = make_plan(["caffe", "tflite", "mnn", "onnx"], ["fp32", "int8"], None)
    labels = [j.label() for j in p.jobs if get_target(j.target).available()]
    assert p.jobs[0].target == "onnx"
    assert "tflite/int8-io/raw" in labels and "mnn/int8-weight/raw" in labels
    assert {"target": "caffe", "precision": "int8", "reason": "caffe offers fp32"} in p.skipped


@fuzz(60)
@given(models=st.lists(st.sampled_from(["rfb-320", "slim-320", "rfb-640"]), min_size=1, max_size=3, unique=True),
       targets=st.lists(st.sampled_from(ALL), min_size=1, max_size=4, unique=True),
       n=st.integers(1, 5))
def test_shards_partition_the_matrix(models, targets, n):
    try:
        full = matrix(models, targets, ["fp32", "fp16", "int8"])
    except ZooError:
        return  # a target offering none of the precisions: refused as a whole
    shards = [shard_of(full, (k, n)) for k in range(1, n + 1)]
    assert sorted(map(repr, sum(shards, []))) == sorted(map(repr, full))
    assert sum(len(s) for s in shards) == len(full)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ZooError, match="bad --shard"):
        parse_shard(text)
