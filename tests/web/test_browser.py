"""Proof in a real browser: headless Chromium (Debian's chromium, scripts/install_chromium.sh, driven over the
DevTools pipe by the suite's one driver, tests/browser.py) loads a page from a loopback server (webserver.py) that runs each web artifact with web/ultraface.js on the golden photos (the three built-in ones);
its detections must equal the Node worker's (the runtime zoo's parity uses, with the Python pre- and
post-processing): the same faces, boxes and scores within 1e-4."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from browser import Chromium, chromium_path
from webserver import Server
from conftest import ROOT, assert_built
from zoo.exporters import get_target, load_runner
from zoo.core.images import builtin_images, load_batch
from zoo.core.model.processing import postprocess

HERE = Path(__file__).resolve().parent
TOL = 1e-4  # normalised box coordinates and scores
#: (target, precision, runtime in the page and in the Node worker): every web artifact of rfb-320 in WebAssembly,
#: and fp32 in TF.js's pure-JavaScript cpu backend too (seconds per image: fp32 only)
ITEMS = [("tfjs", "fp32", "tfjs-wasm"), ("tfjs", "fp16", "tfjs-wasm"), ("tfjs", "uint8-weight", "tfjs-wasm"),
         ("tfjs", "fp32", "tfjs-cpu"), ("onnx", "fp32", "ort-web"), ("onnx", "fp16", "ort-web"),
         ("onnx", "int8", "ort-web")]


def _need(target: str, runtime: str) -> None:
    why = get_target(target).runtime_problem(runtime)
    if why:
        pytest.skip(f"{runtime} is not available: {why}")
    why = os.environ.get("ZOO_SKIP_BROWSER") or (
        None if chromium_path() else "no chromium (Debian's package: bash scripts/install_chromium.sh)")
    if why:
        pytest.skip(why)


def node_faces(primary: Path, runtime: str, photos: list[Path]) -> list[list[dict]]:
    """Detections of the artifact in the Node worker, with zoo's own (Python) pre- and post-processing."""
    runner = load_runner(primary, runtime=runtime)
    w, h = runner.meta.input_size
    out = []
    with runner:
        for p in photos:
            x, _, sizes = load_batch([p], w, h)
            r = runner.infer(x)
            iw, ih = sizes[0]
            out.append([{"box": list(d.box), "score": d.score} for d in
                        postprocess(r["scores"][0], r["boxes"][0], iw, ih, runner.meta.labels)])
    return out


def same_faces(page: list[dict], node: list[dict], size: tuple[int, int], tol: float) -> str | None:
    """None when both list the same faces (sorted by score) within ``tol``; else what differs."""
    if len(page) != len(node):
        return f"{len(page)} faces in the page, {len(node)} in the Node worker"
    scale = np.array([size[0], size[1], size[0], size[1]], dtype=np.float64)
    for i, (a, b) in enumerate(zip(page, node)):
        db = np.abs(np.array(a["box"]) / scale - np.array(b["box"]) / scale).max()
        ds = abs(a["score"] - b["score"])
        if db > tol or ds > tol:
            return f"face {i}: box differs by {db:.2e}, score by {ds:.2e}"
    return None


@pytest.fixture(scope="module")
def artifacts(export_dir):
    """rfb-320's tfjs and ONNX exports (the target matrix's own: exported once per session)."""
    out = {}
    for target in ("tfjs", "onnx"):
        t = get_target(target)
        if not t.available():
            pytest.skip(f"{target} is not available: {', '.join(t.missing())}")
        folder, manifest, cp = export_dir("rfb-320", target, ",".join(t.precisions))
        assert_built(manifest, cp)  # an int8 file may FAIL its strict tier honestly: the page must still equal Node
        for a in manifest["artifacts"]:
            out[(target, a["precision"])] = folder / a["primary"]
        out[(target, "web")] = folder / "web"  # the web module the export ships
    return out


def test_the_page_detects_what_the_node_worker_detects(artifacts, tmp_path):
    for target, _, runtime in ITEMS:
        _need(target, runtime)
    photos = builtin_images()
    served = tmp_path / "served"
    items = []
    for i, (target, precision, runtime) in enumerate(ITEMS):
        src = artifacts[(target, precision)]
        d = served / f"a{i}"
        d.mkdir(parents=True)
        files = [src] + ([src.with_name(src.name.replace(".model.json", ".bin"))] if target == "tfjs" else [])
        for f in files:
            (d / f.name).write_bytes(f.read_bytes())
        items.append({"target": target, "precision": precision, "runtime": runtime, "url": f"/a/a{i}/{src.name}"})
    (served / "job.json").write_text(json.dumps({"items": items, "photos": [f"/p/{p.name}" for p in photos]}))
    # the page imports the module as the tfjs export shipped it (web/ultraface.js beside the artifacts)
    routes = {"/node_modules/": ROOT / "node_modules", "/zoo/web/": artifacts[("tfjs", "web")], "/a/": served,
              "/p/": photos[0].parent, "/job/": served, "/": HERE}
    with Server(routes) as server, Chromium() as browser:
        page = browser.open(server.url + "/page.html?job=/job/job.json")
        result = server.wait(600)
        requests, errors, asked = list(server.requests), page.console_errors, page.requests
    assert result is not None, f"the page posted no result; its console: {errors}"
    assert all(u.startswith((server.url, "data:", "blob:")) for u in asked), asked  # only its own loopback origin
    assert result["ok"], result.get("error")
    assert all(not r.startswith(("http:", "https:")) for r in requests)
    sizes = [tuple(int(v) for v in load_batch([p], 320, 240)[2][0]) for p in photos]
    problems = []
    for item, got in zip(items, result["results"]):
        assert got["used"] == item["runtime"]
        target, precision = item["target"], item["precision"]
        node = node_faces(artifacts[(target, precision)], item["runtime"], photos)
        for p, size, page_photo, node_photo in zip(photos, sizes, got["photos"], node):
            assert page_photo["photo"].endswith(p.name)
            why = same_faces(page_photo["faces"], node_photo, size, TOL)
            if why:
                problems.append(f"{target} {precision} in {item['runtime']}, {p.name}: {why}")
    assert sum(len(ph["faces"]) for r in result["results"] for ph in r["photos"]) >= len(ITEMS) * len(photos)
    assert not problems, "\n".join(problems)
