"""Issue 19: `zoo export --min-runtime NAME==VERSION`: where a converter option exists (MNN's
``--targetVersion``) the jobs of the targets running on NAME carry it; it is part of the artifact's key,
file names and manifest entry (a default build and one for an older runtime never collide); anything no
converter option can target is one clear line. The real conversion and its proof in the old runtime are
in tests/pipeline/test_compat.py."""
from __future__ import annotations

import pytest

from conftest import assert_clean_error, zoo
from zoo.core.errors import ZooError
from zoo.core.manifest import Artifact, FileEntry, Manifest, min_runtime_suffix
from zoo.pipeline.plan import make_plan


def test_plan_marks_only_the_jobs_of_targets_running_on_the_runtime():
    plan = make_plan(["onnx", "mnn"], ["fp32", "int8"], None, min_runtime="mnn==3.0.0")
    by_target = {(j.target, j.precision): j.min_runtime for j in plan.jobs}
    assert by_target[("mnn", "fp32")] == by_target[("mnn", "int8")] == by_target[("mnn", "int8-weight")] == "mnn==3.0.0"
    assert by_target[("onnx", "fp32")] == by_target[("onnx", "int8")] == ""
    mnn = next(j for j in plan.jobs if j.target == "mnn" and j.precision == "fp32")
    assert mnn.label() == "mnn/fp32/raw@mnn3.0.0" and mnn.key == ("mnn", "fp32", "raw", False, "mnn==3.0.0")
    assert mnn.artifact_key("rfb-320") != make_plan(["mnn"], ["fp32"], None).jobs[0].artifact_key("rfb-320")
    assert min_runtime_suffix("mnn==3.0.0") == "-for-mnn3.0.0" and min_runtime_suffix("") == ""
    assert make_plan(["mnn"], ["fp32"], None, min_runtime="MNN==3.4").jobs[0].min_runtime == "mnn==3.4"


@pytest.mark.parametrize("spec, needle", [
    ("mnn", "expected NAME==VERSION"),
    ("mnn==", "expected NAME==VERSION"),
    ("foo==1.0", "unknown runtime 'foo'"),
    ("mnn==3.0.0,mnn==3.1.0", "names mnn twice"),
    ("onnxruntime==1.17.3", "none of the targets (mnn) runs on onnxruntime"),
    ("mnn==2.9.0", "supports MNN >= 3.0"),
    ("mnn==99.0.0", "newer than the converter"),
    ("mnn==three", "expected an MNN release"),
])
def test_what_no_option_can_target_is_refused(spec, needle):
    with pytest.raises(ZooError, match=None) as e:
        make_plan(["mnn"], ["fp32"], None, min_runtime=spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_targets_without_a_converter_option_are_refused_by_name():
    with pytest.raises(ZooError, match="target tflite cannot target an older litert: TensorFlow's TFLiteConverter"):
        make_plan(["tflite"], ["fp32"], None, min_runtime="tflite-runtime==2.14.0")
    for target, spec in (("onnx", "onnxruntime==1.17.3"), ("ncnn", "ncnn==1.0.20240410"), ("openvino", "openvino==2024.6.0")):
        with pytest.raises(ZooError, match=f"target {target} cannot target an older"):
            make_plan([target], ["fp32"], None, min_runtime=spec)


def test_cli_refusal_is_one_line_before_any_work(tmp_path):
    cp = zoo("export", "--model", "rfb-320", "--to", "mnn,tflite", "--out", tmp_path / "x", "--min-runtime", "litert==1.0.1")
    assert_clean_error(cp, "--min-runtime litert==1.0.1", "tflite")
    assert not (tmp_path / "x").exists()


def _art(min_runtime: str = "") -> Artifact:
    name = f"mnn/rfb-320-raw-fp32{min_runtime_suffix(min_runtime)}.mnn"
    return Artifact("rfb-320", "mnn", "fp32", "raw", "NCHW", name, [FileEntry(name, "a" * 64, 1)],
                    min_runtime=min_runtime)


def test_manifest_entry_carries_it_and_default_entries_are_unchanged():
    default, old = _art(), _art("mnn==3.0.0")
    assert "min_runtime" not in default.to_dict()  # existing manifests keep their exact shape and bytes
    assert list(old.to_dict())[:5] == ["model", "target", "precision", "head", "min_runtime"]
    m = Manifest(artifacts=[default, old], model={"id": "rfb-320"})
    back = Manifest.from_dict(m.to_dict(), "test")
    assert [a.min_runtime for a in back.artifacts] == ["", "mnn==3.0.0"]
    assert back.artifacts[1].key.label() == "mnn/fp32/raw@mnn3.0.0"
    assert back.to_json() == m.to_json()
    bad = m.to_dict()
    bad["artifacts"][1]["min_runtime"] = 3
    with pytest.raises(ZooError, match="'min_runtime' must be short text"):
        Manifest.from_dict(bad, "test")
