"""`zoo export --profile`: where the time goes, written beside the manifest; the PyTorch reference
computed once and reused; workers that do not convert from PyTorch never load torch; an artifact
built in a warm worker after other jobs is byte-identical to one built in a fresh process."""
from __future__ import annotations

import json

from conftest import zoo

PHASES = ("waiting", "startup", "imports", "conversion", "quantization", "reference", "inference", "other", "total")


def _export(out, halves, cache, targets="mnn", *extra):
    return zoo("export", "--model", "rfb-320", "--to", targets, "--out", out, "--images", halves["B"],
               "--min-evidence", "1", *extra, env={"ZOO_CACHE_DIR": str(cache)}, check=0)


def _rows(out) -> dict:
    return {r["what"]: r for r in json.loads((out / "timings.json").read_text())["rows"]}


def test_profile_reference_reuse_and_torch_free_workers(tmp_path, halves):
    cache = tmp_path / "cache"
    # one process per family, one job after another: onnx and tflite fp16 are built warm, after fp32
    cp = _export(tmp_path / "a", halves, cache, "onnx,mnn,tflite", "--precision", "fp32,fp16", "--jobs", "1", "--profile")
    rows = _rows(tmp_path / "a")
    assert {"pytorch reference", "onnx intermediate raw", "mnn/fp32/raw", "tflite/fp32/raw", "tflite/fp16/raw",
            "onnx/fp16/decoded", "all"} <= set(rows)
    for what, r in rows.items():
        if what == "all":
            assert r["wall"] > 0
            continue
        assert r["ok"], r
        for k in PHASES:
            assert r[k] >= 0, (what, k, r)
        assert r["cpu"] > 0, r  # the CPU seconds of the job's process (its subprocesses included)
        # the phases account for the job's time
        assert abs(sum(r[k] for k in PHASES[:-1]) - r["total"]) < 0.05 + 0.01 * r["total"], r
    assert rows["pytorch reference"]["reference"] > 0
    assert rows["onnx intermediate raw"]["conversion"] > 0
    # MNN converts from our ONNX and TFLite builds its network from the NumPy weights: no torch
    assert rows["pytorch reference"]["torch"] and rows["onnx intermediate raw"]["torch"]
    assert not rows["mnn/fp32/raw"]["torch"] and not rows["tflite/fp32/raw"]["torch"]
    assert rows["mnn/fp32/raw"]["reference"] < 1.0  # read, not computed
    # TensorFlow is imported by the TFLite process's warm-up, started with the run (Target.prestart), beside
    # the reference and the ONNX export; both TFLite jobs then import nothing and start at once
    warmup = rows["tflite warm-up (imports)"]
    assert warmup["ok"] and warmup["imports"] > 0.5, warmup
    assert rows["tflite/fp32/raw"]["imports"] < 0.5 and rows["tflite/fp16/raw"]["imports"] < 0.5
    assert "mnn" in cp.stderr and "wall:" in cp.stderr  # the table is printed
    manifest = (tmp_path / "a" / "manifest.json").read_text()
    assert "timings.json" not in manifest  # beside the manifest, never in it

    # a second run finds the reference in the cache: no PyTorch job at all, the same manifest
    _export(tmp_path / "b", halves, cache, "mnn", "--profile")
    rows_b = _rows(tmp_path / "b")
    assert "pytorch reference" not in rows_b

    def art(d, targets, precision):
        return [a for a in json.loads((d / "manifest.json").read_text())["artifacts"]
                if a["target"] in targets and a["precision"] == precision]

    assert art(tmp_path / "a", ["mnn"], "fp32") == art(tmp_path / "b", ["mnn"], "fp32")

    # a damaged cache file is not trusted: it is computed again, and the verdict does not change
    for f in (cache / "reference").glob("*.npz"):
        blob = bytearray(f.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        f.write_bytes(bytes(blob))
    # ... and built fresh (each the first job of its process), onnx and tflite fp16 are the same bytes
    # (sha256 in the entries) with the same verdict
    _export(tmp_path / "c", halves, cache, "onnx,tflite", "--precision", "fp16", "--jobs", "1", "--profile")
    rows_c = _rows(tmp_path / "c")
    assert rows_c["pytorch reference"]["reference"] > 0  # the damaged file was computed again
    assert rows_c["tflite warm-up (imports)"]["imports"] > 0.5  # the fp16 file is its process's first export
    assert art(tmp_path / "c", ["onnx", "tflite"], "fp16") == art(tmp_path / "a", ["onnx", "tflite"], "fp16")
