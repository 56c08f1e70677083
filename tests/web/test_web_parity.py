"""The web runtimes on the other architecture: slim-320's files in the web runtimes its export did not run.

rfb-320's are the target matrix's (tests/targets/test_targets.py: `zoo check` in each runtime), and tfjs-wasm is
every tfjs export's own runtime (the matrix's export parity, both models). Here the same exports of slim-320 (the
matrix's, exported once per session) are checked: ONNX in ort-web on the gate half of the photos (the export's own
parity photos: its PyTorch reference is reused), tfjs in tfjs-cpu (pure JavaScript, `Target.slow_runtimes`) on
three crowds. fp32 finds every face (IoU >= 0.99), nothing extra, and every tensor is within 1e-4 (the fp32 tier);
the other flavours pass their tiers. (The 16-photo tables are in the closing note of issue 34.)
"""
from __future__ import annotations

import json

import pytest

from conftest import zoo
from zoo.exporters import get_target


@pytest.mark.parametrize("target,runtime", [("onnx", "ort-web"), ("tfjs", "tfjs-cpu")])
def test_slim_passes_parity_in_the_web_runtimes(target, runtime, export_dir, few_photos, halves):
    t = get_target(target)
    why = (", ".join(t.missing()) if not t.available() else None) or t.runtime_problem(runtime)
    if why:
        pytest.skip(f"{runtime} is not available: {why}")
    folder, manifest, cp = export_dir("slim-320", target, ",".join(t.precisions))
    assert manifest is not None and not manifest["failed"], cp.stdout[-2000:] + cp.stderr[-2000:]
    images = few_photos if runtime in t.slow_runtimes else halves["B"]
    cp = zoo("check", folder, "--images", images, "--runtime", runtime, "--min-evidence", "100", "--json")
    res = json.loads(cp.stdout)
    assert res["runtime"] == runtime and len(res["results"]) == len(manifest["artifacts"]), cp.stderr[-2000:]
    for r in res["results"]:
        assert r["passed"], (r["artifact"], r["failures"])
        d = r["parity"]["detections"]
        assert d["reference"] >= 100, (r["artifact"], d)  # crowds: the check has teeth
        if "/fp32/" in r["artifact"]:
            assert d["missed"] == 0 and d["extra"] == 0 and d["min_iou"] >= 0.99, (r["artifact"], d)
    assert cp.returncode == 0, cp.stderr[-2000:]
