"""The HTML page and the PNG chart of `zoo report`, from report data alone (no runtime): what the page holds
(failures first, a row per artifact key, alt text, header cells, a damaged compat.json marked), that it
is deterministic, that the PNG keeps every drawn thing inside its canvas, and that a damaged bench.json
is one clear error whatever its bytes."""
from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.checkpoints.loader import published
from zoo.core.errors import ZooError
from zoo.validation.bench.store import read_bench
from zoo.validation.report.collect import _parity_summary
from zoo.validation.report.html import render_html

TARGETS = ["onnx", "mnn", "ncnn", "tflite", "openvino", "caffe"]


def _parity(passed: bool, matched: int, extra: int = 0, precision: str = "fp32") -> dict:
    return {"passed": passed, "precision": precision, "images": 16,
            "detections": {"reference": 291, "matched": matched, "missed": 291 - matched, "extra": extra,
                           "strict": {"matched": matched - 1, "missed": 292 - matched, "extra": extra + 1}},
            "evidence": {"images": 16, "faces": 291, "strong": True, "gate": [{"name": "3.jpg", "sha256": "ab" * 32}]},
            "per_image": [{"image": "3.jpg", "reference": 20, "matched": 20 - (291 - matched), "missed": 291 - matched,
                           "extra": extra}],
            "failures": [] if passed else [f"detections: {matched}/291 matched at IoU >= 0.5, {extra} extra"]}


def _artifact(model: str, target: str, precision: str, parity: dict, p50: float | None = None) -> dict:
    primary = f"{target}/{model}-raw-{precision}.{target}"
    bench = [] if p50 is None else [{"model": model, "target": target, "precision": precision, "head": "raw",
                                     "threads": 1, "p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2,
                                     "p50_rounds_ms": [p50 * 0.97, p50 * 1.04], "init_ms": 20.0, "peak_rss_mb": 190.0,
                                     "runtime": target}]
    size = 300_000 + 1000 * len(primary) + (400_000 if precision == "fp32" else 0)
    return {"folder": "rel", "model": model, "target": target, "precision": precision, "head": "raw", "dynamic": False,
            "min_runtime": "", "label": f"{target}/{precision}/raw", "primary": primary, "files": [primary],
            "sha256": f"{abs(hash(primary)) % 10**12:064d}"[:64],
            "file_entries": [{"path": primary, "bytes": size, "sha256": "0" * 64}], "input_size": [320, 240],
            "size_bytes": size, "size_mib": round(size / 2**20, 3), "parity": _parity_summary(parity), "bench": bench,
            "stale": False}


def _report(n_models: int = 1, with_bench: bool = True, failing: bool = True, cpu: str = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz") -> dict:
    arts = []
    for model in ["rfb-320", "slim-320"][:n_models]:
        for t in TARGETS:
            for prec in ("fp32", "int8") if t != "caffe" else ("fp32",):
                bad = failing and model == "rfb-320" and t == "mnn" and prec == "int8"
                par = _parity(not bad, 280 if bad else 291 - (prec == "int8"), 4 if bad else 0, prec)
                arts.append(_artifact(model, t, prec, par, (9.5 + len(t)) * (0.6 if prec == "int8" else 1)
                                      if with_bench else None))
    return {"schema_version": 1, "folders": ["/somewhere/rel"], "models": [{"id": "rfb-320", "arch": "rfb"}],
            "artifacts": arts, "failed": [], "notes": [], "compat": [], "reference": published(),
            "bench": {"present": with_bench, "files": [], "timestamp": "2026-12-07T10:00:00", "threads": [1] if with_bench else [],
                      "machine": {"cpu": cpu, "cores_available": 2}, "settings": {"runs": 50, "rounds": 3}}}


class _Page(HTMLParser):
    """Tables (with their header cells and body rows), images and SVG images with their text alternatives."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.text, self._t = [], [], [], None
        self.ids = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            self._t = {"cls": a.get("class"), "th": 0, "rows": 0}
            self.tables.append(self._t)
        elif tag == "th" and self._t is not None:
            self._t["th"] += 1
        elif tag == "tr" and self._t is not None:
            self._t["rows"] += 1
        elif tag == "img":
            self.images.append(("img", a.get("alt")))
        elif tag == "svg" and a.get("aria-hidden") != "true":
            self.images.append(("svg", a.get("aria-label") if a.get("role") == "img" else None))
        elif tag in ("script", "link", "iframe", "object"):
            self.images.append((tag, "not allowed"))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


def test_the_page_shows_failures_first_and_one_row_per_artifact():
    rep = _report(n_models=2)
    html = render_html(copy.deepcopy(rep))
    page = _parse(html)
    (summary,) = [t for t in page.tables if t["cls"] == "summary"]
    assert summary["rows"] - 1 == len(rep["artifacts"])  # the header row, then one per artifact key
    body = html.split('class=summary', 1)[1]
    first = re.search(r'<span class="v (\w+)">', body).group(1)
    assert first == "fail"  # the failing artifact leads the summary
    assert html.index('id="failures"') < html.index('id="summary"')
    text = " ".join(page.text)
    assert "FAIL" in text and "1 FAIL" in text and "detections: 280/291" in text
    assert len(set(page.ids)) == len(page.ids), "duplicate ids"
    for t in page.tables:
        assert t["th"] > 0, "a table without header cells"
    for kind, alt in page.images:
        assert alt and alt != "not allowed", f"{kind} without a text alternative (or not self-contained)"
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html


def test_the_same_report_gives_the_same_bytes():
    rep = _report(n_models=2)
    assert render_html(copy.deepcopy(rep)) == render_html(copy.deepcopy(rep))


def test_a_damaged_compat_json_is_a_marked_section():
    rep = _report()
    rep["compat"] = [{"folder": "rel", "file": "rel/compat.json", "doc": None, "current": {},
                      "problem": "rel/compat.json is not valid JSON (Expecting value at line 1)"}]
    html = render_html(rep)
    assert 'class="box damaged"' in html and "compat.json unusable" in html and "not valid JSON" in html


def test_two_releases_side_by_side_name_what_changed():
    old, new = _report(failing=False), _report(failing=True)
    new["artifacts"][0]["sha256"] = "f" * 64
    new["artifacts"][0]["size_bytes"] += 1000
    del new["artifacts"][-1]
    html = render_html(new, old=old)
    section = html.split('id="changes"', 1)[1].split("</section>", 1)[0]
    assert "removed" in section and "ffffffffffff" in section and "PASS</span> → <span" in section
    assert html.index('id="changes"') < html.index('id="summary"')


def test_newer_parity_fields_are_shown_when_present_and_absent_is_not_measured():
    rep = _report()
    raw = _parity(True, 291)
    raw["shift"] = {"max_px": 1.25, "mean_px": 0.31}
    raw["detections"]["strict_counts"] = {"kept": 290}
    rep["artifacts"][0]["parity"] = _parity_summary(raw)
    html = render_html(rep)
    assert "max_px" in html and "1.25" in html and "strict_counts" in html


def _png_margin(path, band: int = 3) -> int:
    """How many pixels of the outer ``band``-pixel frame of a PNG are not background."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    bg = (255, 255, 255)
    px = im.load()
    frame = [(x, y) for x in range(w) for y in list(range(band)) + list(range(h - band, h))]
    frame += [(x, y) for y in range(h) for x in list(range(band)) + list(range(w - band, w))]
    return sum(1 for x, y in frame if px[x, y] != bg)


@pytest.mark.parametrize("with_bench", [True, False])
def test_the_png_keeps_its_title_and_legend_inside(tmp_path, with_bench):
    """The chart of a 22-artifact release (one thread count, a long CPU name; or the sizes alone): nothing
    drawn touches the canvas' edge (a title or legend wider than the figure was cut there)."""
    pytest.importorskip("matplotlib")
    from zoo.validation.report.png import render_png

    rep = _report(n_models=2, with_bench=with_bench)
    out = render_png(rep, tmp_path / "r.png")
    assert _png_margin(out) == 0
    if with_bench:
        again = render_png(copy.deepcopy(rep), tmp_path / "r2.png")
        assert again.read_bytes() == out.read_bytes()  # no Software metadata, no date


# the shape `zoo bench` writes (validation.bench.run), abridged
BENCH = {"schema_version": 1, "zoo_version": "0.1.0", "timestamp": "2026-12-07T10:00:00",
         "machine": {"cpu": "x", "cpu_flags": ["avx2"], "cores_logical": 2, "cores_available": 2, "machine": "x86_64",
                     "platform": "Linux", "python": "3.11.7", "numpy": "2.1", "loadavg_start": [1.0, 2.0, 3.0],
                     "matmul_peak_gflops": 40.0, "matmul_peak_rounds_gflops": [39.5, 40.0], "matmul_median_gflops": 38.0,
                     "matmul": {"n": 512, "dtype": "float32", "threads": 1}},
         "settings": {"threads": [1], "runs": 5, "warmup": 1, "rounds": 2, "input": "zeros", "isolation": "process"},
         "results": [{"model": "rfb-320", "target": "onnx", "precision": "fp32", "head": "raw", "threads": 1,
                      "primary": "onnx/rfb-320-raw-fp32.onnx", "size_bytes": 1000, "sha256": "ab" * 32, "macs": 100,
                      "params": 10, "runtime": "onnxruntime", "p50_ms": 9.5, "p50_rounds_ms": [9.4, 9.6],
                      "init_rounds_ms": [20.0, 21.0], "spread_pct": 2.1, "peak_rss_mb": 180.0, "cpu_util": 0.98,
                      "gflops": 21.0, "roofline_ratio": 0.5, "samples": 10, "rounds": 2, "warmup": 1, "runs": 5,
                      "dynamic": True, "errors": ["one round failed"]}]}


def test_a_bench_json_as_zoo_bench_writes_it_is_read(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(BENCH))
    assert read_bench(tmp_path / "bench.json") == BENCH


@fuzz(40)
@given(data=st.data())
def test_a_damaged_bench_json_is_one_error_or_a_report(tmp_path_factory, data):
    """Truncated, byte-flipped or re-typed: read_bench gives the document or one ZooError, and what it
    gives renders (never a traceback from deep inside the page)."""
    raw = bytearray(json.dumps(BENCH).encode())
    how = data.draw(st.sampled_from(["cut", "flip", "retype"]))
    if how == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    else:
        doc = copy.deepcopy(BENCH)
        row = doc["results"][0]
        key = data.draw(st.sampled_from(sorted(row) + ["machine.cpu_flags", "machine.cores_available", "settings.threads"]))
        val = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=3),
                                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)))
        if "." in key:
            a, b = key.split(".")
            doc[a][b] = val
        else:
            row[key] = val
        raw = bytearray(json.dumps(doc).encode())
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    path.write_bytes(bytes(raw))
    try:
        doc = read_bench(path)
    except ZooError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    rep = _report(with_bench=False)
    rep["bench"] = {"present": True, "files": [], "timestamp": doc.get("timestamp"), "machine": doc.get("machine"),
                    "settings": doc.get("settings"), "threads": sorted({r["threads"] for r in doc["results"] if "threads" in r})}
    rows = [r for r in doc["results"] if r.get("primary") == rep["artifacts"][0]["primary"]]
    rep["artifacts"][0]["bench"] = rows
    render_html(rep)
