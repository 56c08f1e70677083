"""Issue 18: what is specific to the OpenVINO target, in the real OpenVINO runtime.

(Parity of every precision for every model id, `check` in its runtime, `detect --artifact`, the int8
size ratio for every model id, `zoo diff`, hostile files and the no-network audit of a whole export are
registry-driven: test_targets.py, test_diff.py, test_hostile_artifacts.py, test_no_network.py.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import osaudit
from conftest import HALVES, IMAGES, ROOT, assert_built, ort_run, zoo
from zoo.exporters import get_target

NONET = ROOT / "tests" / "targets" / "nonet"
PRECISIONS = "fp32,fp16,int8"  # the target's precisions: the same export as test_targets.py's


@pytest.fixture(autouse=True)
def _need_openvino():
    t = get_target("openvino")
    if not t.available():
        pytest.skip(f"openvino runtime not installed: {t.missing()} (pip install 'ultraface-zoo[openvino]')")


def _ok(entry):
    folder, manifest, cp = entry
    assert_built(manifest, cp)
    return folder, manifest


def _art(manifest, precision):
    return next(a for a in manifest["artifacts"] if a["precision"] == precision)


def _read(path):
    from zoo.exporters.openvino.quiet import import_openvino

    return import_openvino().Core().read_model(str(path))


@pytest.mark.parametrize("head", ["raw", "decoded"])
def test_fp32_outputs_equal_our_onnx_in_onnxruntime(head, export_dir, batch_cache):
    """Both heads of the fp32 IR, in OpenVINO through our runner, against our ONNX of the same head in
    plain onnxruntime, on every shared photo: within 1e-4."""
    from zoo.exporters.openvino.runner import OpenvinoRunner
    from zoo.core.meta import read_meta

    ov_folder, ov_manifest = _ok(export_dir("rfb-320", "openvino", PRECISIONS) if head == "raw"
                                 else export_dir("rfb-320", "openvino", "fp32", "decoded"))
    onnx_folder, onnx_manifest = _ok(export_dir("rfb-320", "onnx", "fp32", head))
    ov_primary = ov_folder / _art(ov_manifest, "fp32")["primary"]
    x, _, _ = batch_cache((320, 240))
    theirs = ort_run(onnx_folder / _art(onnx_manifest, "fp32")["primary"], x)  # scores, boxes (raw: offsets)
    with OpenvinoRunner(read_meta(ov_primary), ov_primary) as r:
        ours = r.infer(x)
    assert r.meta.head == head
    np.testing.assert_allclose(ours["scores"], theirs[0], atol=1e-4)
    np.testing.assert_allclose(ours["locations" if head == "raw" else "boxes"], theirs[1], atol=1e-4)


def test_metadata_in_rt_info_equals_sidecar_and_manifest(export_dir):
    """The IR's rt_info holds our metadata (and not the fp32 ONNX's, which convert_model copies)."""
    from zoo.exporters.openvino.convert import embedded_metadata
    from zoo.core.meta import read_meta, sidecar_path

    folder, manifest = _ok(export_dir("rfb-320", "openvino", PRECISIONS))
    for a in manifest["artifacts"]:
        primary = folder / a["primary"]
        model = _read(primary)
        embedded = embedded_metadata(model)
        side = json.loads(sidecar_path(primary).read_text())
        side.pop("files")
        assert embedded == side == a["meta"]
        assert embedded["target"] == "openvino" and embedded["precision"] == a["precision"] and embedded["head"] == "raw"
        assert "framework" not in model.get_rt_info().keys()
        assert read_meta(primary).to_dict() == a["meta"]
        assert sorted(f["path"] for f in a["files"]) == sorted(
            [a["primary"], a["primary"][:-4] + ".bin", sidecar_path(a["primary"]).as_posix()])


@pytest.mark.parametrize("threads", [1, 2])
def test_the_runner_compiles_with_the_thread_count_and_f32(threads, export_dir):
    from zoo.exporters.openvino.runner import OpenvinoRunner
    from zoo.core.meta import read_meta

    folder, manifest = _ok(export_dir("rfb-320", "openvino", PRECISIONS))
    primary = folder / _art(manifest, "fp16")["primary"]
    with OpenvinoRunner(read_meta(primary), primary, threads=threads) as r:
        assert r.property("INFERENCE_NUM_THREADS") == threads
        assert str(r.property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
        assert r.infer(np.zeros((2, 3, 240, 320), np.float32))["scores"].shape == (2, 4420, 2)
    assert r.compiled is None and r.request is None  # released on exit


def test_exporting_again_gives_the_same_bytes(export_dir, halves, tmp_path):
    """Every precision is byte-reproducible (int8: the same calibration, the same NNCF run, the same
    compaction and names)."""
    folder, manifest = _ok(export_dir("rfb-320", "openvino", PRECISIONS))
    again = tmp_path / "again"
    zoo("export", "--model", "rfb-320", "--to", "openvino", "--precision", PRECISIONS, "--out", again,
        "--images", halves["B"], "--calib", halves["A"], "--min-evidence", "100", "--jobs", "1", check=0)
    for p in PRECISIONS.split(","):
        for f in _art(manifest, p)["files"]:
            assert (again / f["path"]).read_bytes() == (folder / f["path"]).read_bytes(), f["path"]


def _ir_bytes(folder, art) -> int:
    return sum((folder / f["path"]).stat().st_size for f in art["files"] if not f["path"].endswith(".json"))


def test_int8_ir_is_at_most_45_percent_of_fp32(export_dir):
    """The int8 IR (.xml + .bin) of rfb-320 within the bound every int8 artifact meets, both IRs
    compacted alike; the float-kept convolutions' weights stored f16 and recorded in the metadata."""
    folder, manifest = _ok(export_dir("rfb-320", "openvino", PRECISIONS))
    fp32, int8 = _art(manifest, "fp32"), _art(manifest, "int8")
    assert _ir_bytes(folder, int8) <= 0.45 * _ir_bytes(folder, fp32), (_ir_bytes(folder, int8), _ir_bytes(folder, fp32))
    q = int8["meta"]["io"]["quantization"]
    assert q["float_weights"].startswith("f16") and q["float_nodes"]
    for a in (fp32, int8):
        text = (folder / a["primary"]).read_text()
        assert "\n\t" not in text and "> <" not in text  # no whitespace between tags


def _compare(ov, a, b, x):
    """Outputs of two IRs (paths) on ``x``, image by image, in f32: the largest difference."""
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    ca, cb = core.compile_model(str(a), "CPU", cfg), core.compile_model(str(b), "CPU", cfg)
    worst = 0.0
    for i in range(x.shape[0]):
        ra, rb = ca({0: x[i : i + 1]}), cb({0: x[i : i + 1]})
        worst = max(worst, *(float(np.abs(ra[oa] - rb[ob]).max()) for oa, ob in zip(ca.outputs, cb.outputs)))
    return worst


def _names(model, const_ids):
    """(friendly name, tensor names) of every operation not computed from constants alone."""
    return sorted((op.get_friendly_name(), [sorted(o.get_names()) for o in op.outputs()])
                  for op in model.get_ordered_ops() if op.get_instance_id() not in const_ids)


def test_compaction_is_lossless_and_keeps_the_tensor_names(export_dir, batch_cache, tmp_path):
    """`compact` on real IRs (the fp32 one and an NNCF int8 one, the float-kept weights left f32):
    the compacted IR computes exactly the same outputs as ``save_model``'s plain IR on the photos,
    in fewer bytes; every operation on the input's path keeps its name and ONNX tensor names;
    constants (and what is computed from them alone) are named c0, c1, ... and shared when equal."""
    from zoo.exporters.openvino.convert import constant_only_ops, onnx_to_ov, save_ir
    from zoo.exporters.openvino.quantize import float_nodes, to_int8
    from zoo.exporters.openvino.quiet import import_openvino

    ov = import_openvino()
    folder, manifest = _ok(export_dir("rfb-320", "onnx", "fp32", "raw"))
    fp32 = onnx_to_ov(folder / _art(manifest, "fp32")["primary"])
    x, _, _ = batch_cache((320, 240))
    int8 = to_int8(fp32, x[:2], float_nodes(fp32), "performance")
    for name, model in (("fp32", fp32), ("int8", int8)):
        plain = tmp_path / f"{name}-plain.xml"
        ov.save_model(model, str(plain), compress_to_fp16=False)
        xml, bin_ = save_ir(model, tmp_path, f"{name}-compact", fp16=False)
        compacted = tmp_path / xml
        assert _compare(ov, plain, compacted, x) == 0.0, name
        size = lambda p: p.stat().st_size + p.with_suffix(".bin").stat().st_size  # noqa: E731
        assert size(compacted) < size(plain), name
        before, after = _read(plain), _read(compacted)
        const_before = {op.get_instance_id() for op in constant_only_ops(before)}
        const_after = constant_only_ops(after)
        assert _names(before, const_before) == _names(after, {op.get_instance_id() for op in const_after}), name
        assert [op.get_friendly_name() for op in const_after] == [f"c{i}" for i in range(len(const_after))]
        assert not any(o.get_names() for op in const_after for o in op.outputs())
        consts = [op for op in const_after if op.get_type_name() == "Constant"]
        keys = {(op.get_output_element_type(0).get_type_name(), tuple(op.get_output_shape(0)), op.get_data().tobytes())
                for op in consts}
        assert len(keys) == len(consts), name  # no two equal constants left
        if name == "int8":
            assert len(consts) < len([op for op in before.get_ordered_ops() if op.get_type_name() == "Constant"])


def test_no_telemetry_no_network_no_file_in_home(export_dir, tmp_path):
    """Our import path makes openvino-telemetry unimportable before openvino is imported: converting,
    quantizing and running, under the no-network audit (tests/targets/nonet) and with a fresh home
    folder, try no connection and leave no consent, client-id or usage file behind. (Measured with
    openvino 2026.4.1 and nncf 3.4.0: a plain ``import openvino, nncf`` writes ~/intel/openvino_ga_cid
    and ~/intel/stats and resolves an analytics host; the audit blocked it.)"""
    folder, manifest = _ok(export_dir("rfb-320", "onnx", "fp32", "raw"))
    src = folder / _art(manifest, "fp32")["primary"]
    home, log = tmp_path / "home", tmp_path / "events.log"
    home.mkdir()
    code = f"""
import sys
import numpy as np
from pathlib import Path
from zoo.exporters.openvino.convert import onnx_to_ov, save_ir
from zoo.exporters.openvino.quantize import float_nodes, to_int8
from zoo.exporters.openvino.runner import OpenvinoRunner
from zoo.core.images import load_batch
from zoo.core.meta import read_meta
meta = read_meta(Path({str(src)!r})).with_(target="openvino", precision="int8")
out = Path({str(tmp_path)!r})
model = onnx_to_ov(Path({str(src)!r}))
x, _, _ = load_batch(sorted(Path({str(IMAGES)!r}).glob("*.jpg"))[:2], 320, 240)
xml, _ = save_ir(to_int8(model, x, float_nodes(model), "performance"), out, "m", fp16=False)
with OpenvinoRunner(meta, out / xml) as runner:
    runner.infer(x)
assert sys.modules["openvino_telemetry"] is None and "openvino" in sys.modules and "nncf" in sys.modules
print("done")
"""
    env = dict(os.environ, HOME=str(home), ZOO_NONET_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(NONET), str(ROOT)]))
    env.pop("CI", None)  # OpenVINO's converter skips its telemetry under CI=true: prove it without that
    cmd = [sys.executable, "-c", code]
    if osaudit.missing_reason() is None:  # and the OS-level audit: no look-up or connection from native code either
        with osaudit.os_audit(tmp_path / "audit") as audit:
            cp = audit.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert audit.clean, audit.report()
    else:
        cp = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert cp.returncode == 0 and "done" in cp.stdout, cp.stdout[-2000:] + cp.stderr[-2000:]
    assert not log.exists() or not log.read_text(), log.read_text()
    assert not list(home.rglob("*")), sorted(str(p) for p in home.rglob("*"))


def test_int8_of_the_decoded_head_is_refused(tmp_path):
    from zoo.exporters.base import ExportRequest
    from zoo.core.errors import ZooError
    from zoo.core.meta import ArtifactMeta

    meta = ArtifactMeta(model_id="slim-320", arch="slim", input_size=(320, 240), labels=("BACKGROUND", "face"),
                        head="decoded", checkpoint_sha256="0" * 64, target="openvino", precision="int8")
    req = ExportRequest(meta=meta, state_dict={}, out_dir=tmp_path, stem="m", onnx_path=tmp_path / "m.onnx")
    with pytest.raises(ZooError, match="use --head raw"):
        get_target("openvino").export(req)
