"""Issue 39 (first part): int8 of the decoded contract ends in a verdict, never an internal error, and the
run's last line counts every FAIL.

One export, rfb-320, `--precision int8 --head decoded` to ONNX (quantised with the decoding left in float),
MNN (full int8 quantises only the raw graph: skipped with its reason, int8-weight built) and TFLite; int8
is calibrated on half A and gated on half B of the photos (tests/conftest.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from zoo.exporters import get_target

TARGETS = ("onnx", "mnn", "tflite")


@pytest.fixture(scope="module")
def decoded_int8(export_dir):
    missing = [f"{t}: {', '.join(get_target(t).missing())}" for t in TARGETS if not get_target(t).available()]
    if missing:
        pytest.skip(f"not installed: {'; '.join(missing)}")
    return export_dir("rfb-320", ",".join(TARGETS), "int8", head="decoded")


def test_every_decoded_int8_ends_in_a_verdict_and_the_last_line_counts_them_all(decoded_int8):
    folder, manifest, cp = decoded_int8
    assert manifest is not None and cp.returncode in (0, 2), cp.stderr[-2000:]  # 2: FAILs, counted below
    lines = cp.stdout.splitlines()
    fails = [ln for ln in lines if ln.startswith("FAIL")]
    for ln in fails:  # a figure or a reason in words, never an exception's name
        assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b:", ln), ln
    built = {(a["target"], a["precision"]) for a in manifest["artifacts"]}
    failed = {(f["target"], f["precision"]) for f in manifest["failed"]}
    skipped = {(s["target"], s["precision"]): s["reason"] for s in manifest["skipped"]}
    assert {t for t, _ in built | failed | set(skipped)} == set(TARGETS), (built, failed, skipped)
    assert ("onnx", "int8") in built and ("mnn", "int8-weight") in built, (built, failed, skipped)
    # a combination the target does not make is a skip with its reason (stderr and manifest), not a FAIL
    assert "use --head raw" in skipped[("mnn", "int8")] and not failed, (skipped, failed)
    assert f"skipped: {skipped[('mnn', 'int8')]}" in cp.stderr
    parity_fails = [a for a in manifest["artifacts"] if not a["parity"]["passed"]]
    n = len(manifest["failed"]) + len(parity_fails)
    assert len(fails) == n, (fails, n)
    assert cp.returncode == (2 if n else 0), cp.stderr[-2000:]
    if n:
        last = cp.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {n} artifact(s) failed: "), last
        for a in parity_fails:
            assert f"{a['target']}/{a['precision']}" in last, (last, a["target"], a["precision"])


def test_onnx_decoded_int8_keeps_the_decoding_in_float_and_the_originals_io(decoded_int8):
    """The int8 file of the decoded contract: the original's `version-RFB-320.onnx` I/O (names, shapes), its
    convolutions int8, and everything after the last convolution (softmax, the prior arithmetic) float:
    no quantize/dequantize pair touches the Exp of the box decoding or what follows it."""
    import onnx

    folder, manifest, _ = decoded_int8
    art = next(a for a in manifest["artifacts"] if (a["target"], a["precision"]) == ("onnx", "int8"))
    assert art["head"] == "decoded" and art["primary"].endswith("-decoded-int8.onnx")
    m = onnx.load(str(folder / art["primary"]))

    def io(model):  # the original's file (an old exporter) lists its weights among the graph inputs too
        weights = {i.name for i in model.graph.initializer}
        return [(v.name, [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
                for v in (*model.graph.input, *model.graph.output) if v.name not in weights]

    from conftest import REFERENCE
    assert io(m) == io(onnx.load(str(REFERENCE / "onnx" / "version-RFB-320.onnx")))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("DequantizeLinear") > 20 and "Exp" in ops
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    exp = next(n for n in m.graph.node if n.op_type == "Exp")
    assert producer[exp.input[0]].op_type != "DequantizeLinear", "the box decoding's Exp reads int8 values"
    # everything downstream of the Exp is float: no QuantizeLinear after it
    seen, todo = set(), list(exp.output)
    while todo:
        t = todo.pop()
        for n in consumers.get(t, []):
            if n.name not in seen:
                seen.add(n.name)
                assert n.op_type not in ("QuantizeLinear", "DequantizeLinear"), n.name
                todo.extend(n.output)
    d = art["parity"]["detections"]
    assert d["reference"] >= 100 and d["matched"] >= 0.99 * d["reference"], d
    assert np.isfinite(art["parity"]["outputs"]["scores"]["max_abs"]), art["parity"]["outputs"]


def test_a_run_with_nothing_the_targets_make_is_one_line():
    from conftest import assert_clean_error, zoo

    cp = zoo("export", "--model", "rfb-320", "--to", "ncnn,openvino", "--precision", "int8", "--head", "decoded",
             "--out", "/nonexistent-zoo-out")
    assert_clean_error(cp, "nothing to build", "ncnn int8 decoded", "openvino int8 decoded", "use --head raw")
