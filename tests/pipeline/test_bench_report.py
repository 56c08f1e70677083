"""`zoo bench` and `zoo report`: real exports, real runtimes, real worker processes."""
from __future__ import annotations

import csv
import io
import json
import shutil
import struct

import pytest

from conftest import IMAGES, assert_clean_error, zoo

FAST = ["--runs", "5", "--warmup", "1"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """rfb-320 exported once to ONNX and Caffe fp32 (a private folder: bench writes into it)."""
    out = tmp_path_factory.mktemp("bench-release")
    zoo("export", "--model", "rfb-320", "--to", "onnx,caffe", "--precision", "fp32", "--out", out, "--images", IMAGES,
        check=0)
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def benched(release):
    """`zoo bench DIR --json` once: two interleaved rounds so the spread exists."""
    out, manifest = release
    cp = zoo("bench", out, *FAST, "--rounds", "2", "--json", check=0)
    return out, manifest, json.loads(cp.stdout), cp


def _check_result(r: dict, params: int) -> None:
    assert "error" not in r, r
    assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["init_ms"] > 0 and r["cold_init_ms"] > 0
    assert r["peak_rss_mb"] > 50
    assert 80e6 <= r["macs"] <= 130e6, r["macs"]  # RFB-320 is ~100 M MACs
    assert r["params"] == params
    assert 0 < r["roofline_ratio"] < 1.5
    assert r["gflops"] == pytest.approx(2 * r["macs"] / (r["p50_ms"] / 1e3) / 1e9, rel=0.01)
    assert r["runtime"]


def test_bench_json_shape_and_sanity(benched):
    out, manifest, data, cp = benched
    assert set(data) >= {"machine", "settings", "results"}
    m = data["machine"]
    assert m["matmul_peak_gflops"] > 1 and m["cores_available"] >= 1 and m["cpu"]
    assert len(m["matmul_peak_rounds_gflops"]) == 2
    assert data["settings"] == {**data["settings"], "threads": [1], "runs": 5, "warmup": 1, "rounds": 2}
    got = {(r["target"], r["precision"], r["head"]) for r in data["results"]}
    assert got == {(a["target"], a["precision"], a["head"]) for a in manifest["artifacts"]}
    for r in data["results"]:
        _check_result(r, 276292)
        assert r["threads"] == 1 and r["samples"] == 10 and len(r["p50_rounds_ms"]) == 2
        assert r["spread_pct"] is not None and r["spread_pct"] >= 0
    # saved beside the manifest, same results, paths relative to the folder
    saved = json.loads((out / "bench.json").read_text())
    assert [r["p50_ms"] for r in saved["results"]] == [r["p50_ms"] for r in data["results"]]
    assert all((out / r["primary"]).is_file() and "path" not in r for r in saved["results"])
    # no progress bar without a terminal
    assert "\r" not in cp.stderr and "it/s" not in cp.stderr


def test_bench_single_companion_file(release, tmp_path):
    out, manifest = release
    caffe = next(a for a in manifest["artifacts"] if a["target"] == "caffe")
    weights = next(f for f in caffe["files"] if f["path"].endswith(".caffemodel"))
    cp = zoo("bench", out / weights["path"], *FAST, "--rounds", "1", "--json", "--out", tmp_path / "b.json", check=0)
    data = json.loads(cp.stdout)
    [r] = data["results"]
    assert (r["target"], r["precision"], r["model"]) == ("caffe", "fp32", "rfb-320")
    assert r["primary"].endswith(".prototxt")  # the companion leads to its primary file
    assert r["size_bytes"] == sum(f["bytes"] for f in caffe["files"] if not f["path"].endswith(".json"))
    _check_result(r, 276292)
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["p50_ms"] == r["p50_ms"]


def test_model_cost_and_threads_parsing():
    from zoo.validation.bench import model_cost, parse_threads
    from zoo.validation.bench.cost import count_cost
    from zoo.validation.bench.stats import percentile
    from zoo.core.errors import ZooError

    rfb, slim = count_cost("rfb", 2, 320, 240), count_cost("slim", 2, 320, 240)  # uncached: the counting itself
    assert rfb["params"] == 276292 and slim["params"] == 260188
    assert model_cost("rfb", 2, 320, 240) == rfb and model_cost("slim", 2, 320, 240) == slim
    assert 80e6 <= rfb["macs"] <= 130e6 and slim["macs"] < rfb["macs"]
    assert parse_threads("1, 2,2") == [1, 2]
    for bad in ("", "0", "a", "1,-2"):
        with pytest.raises(ZooError):
            parse_threads(bad)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([5.0], 99) == 5.0


def test_report_markdown(benched):
    out, manifest, data, _ = benched
    cp = zoo("report", out, check=0)
    md = cp.stdout
    for a in manifest["artifacts"]:
        assert f"| rfb-320 | {a['target']} | {a['precision']} | {a['head']} |" in md
    assert "*version-RFB*" in md and "*1.11*" in md and "*1.04*" in md  # published sizes
    assert "*35*" in md and "*19.6*" in md and "*9.5*" in md  # published Pi 4B latency
    assert "0.787 / 0.698 / 0.438" in md  # published WIDER FACE AP
    assert "276,292" in md and "100.4 M" in md
    assert "### Latency" in md and "### Parity with PyTorch" in md and "PASS" in md
    p50 = data["results"][0]["p50_ms"]
    assert (f"{p50:.2f}" if p50 < 10 else f"{p50:.1f}") in md
    assert "No bench.json" not in md


def test_report_json_csv_png(benched, tmp_path):
    out, manifest, data, _ = benched
    rep = json.loads(zoo("report", out, "--format", "json", check=0).stdout)
    assert rep["bench"]["present"] and len(rep["artifacts"]) == len(manifest["artifacts"])
    assert all(len(a["bench"]) == 1 and a["parity"]["passed"] for a in rep["artifacts"])
    assert rep["models"][0]["params"] == 276292

    zoo("report", out, "--format", "csv", "--out", tmp_path / "r.csv", check=0)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    measured = [r for r in rows if r["source"] == "measured"]
    assert len(measured) == len(manifest["artifacts"])
    assert all(float(r["p50_ms"]) > 0 and int(r["size_bytes"]) > 100_000 for r in measured)
    assert any(r["source"] == "published" and r["model"] == "version-RFB" and r["p50_ms"] == "35" for r in rows)

    png = tmp_path / "r.png"
    zoo("report", out, "--format", "png", "--out", png, check=0)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    assert 500 <= w <= 4000 and 300 <= h <= 3000


def test_report_without_bench(release, tmp_path):
    out, manifest = release
    copy = tmp_path / "rel"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("bench.json"))
    cp = zoo("report", copy, check=0)
    assert "No bench.json" in cp.stdout and "no bench.json" in cp.stderr
    assert "*version-RFB*" in cp.stdout and "PASS" in cp.stdout
    zoo("report", copy, "--format", "png", check=0)  # default: DIR/report.png
    assert (copy / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs(release, tmp_path):
    out, _ = release
    (tmp_path / "notes.txt").write_text("hi")
    assert_clean_error(zoo("bench", tmp_path / "missing"), "not found")
    assert_clean_error(zoo("bench", tmp_path), "manifest.json")
    assert_clean_error(zoo("bench", tmp_path / "notes.txt"), "unknown file type")
    assert_clean_error(zoo("bench", out, "--threads", "0"), "--threads")
    assert_clean_error(zoo("bench", out, "--threads", "one"), "--threads")
    assert_clean_error(zoo("report", out, "--format", "pdf"), "format")
    assert_clean_error(zoo("report", tmp_path), "manifest.json")


def test_runtime_failure_is_reported_not_fatal(release, tmp_path):
    """A file its runtime cannot load: that measurement fails (exit 2, named), the report says so."""
    out, manifest = release
    broken = tmp_path / "broken"
    caffe = next(a for a in manifest["artifacts"] if a["target"] == "caffe")
    for f in caffe["files"]:
        (broken / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f["path"], broken / f["path"])
    weights = next(broken / f["path"] for f in caffe["files"] if f["path"].endswith(".caffemodel"))
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated weights
    (broken / "manifest.json").write_text(json.dumps({**manifest, "artifacts": [caffe]}))
    cp = zoo("bench", broken, "--runs", "2", "--warmup", "0", "--rounds", "1", "--json")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr, cp.stderr
    assert "1 measurement(s) failed" in cp.stderr and "caffe" in cp.stderr
    [r] = json.loads(cp.stdout)["results"]
    assert r["error"] and "p50_ms" not in r
    md = zoo("report", broken, check=0).stdout
    assert "failed" in md
