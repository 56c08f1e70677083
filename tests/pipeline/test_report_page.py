"""Issue 31: the release's HTML page, rendered in a real browser (Debian's headless Chromium, driven over
the DevTools protocol on a pipe: tests/browser.py), and `zoo report --format html` on real releases.

The page is the one `zoo release` wrote for the session's rfb-320 release (conftest.rfb_release: five
targets, fp32 and int8); `zoo report` must give the same bytes for it. The smaller pages are of copies
of that release cut down to a few artifacts (faster: each page runs every artifact on its photo)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from browser import Chromium, chromium_path
from conftest import assert_clean_error, zoo

_SKIP = os.environ.get("ZOO_SKIP_BROWSER") or (
    None if chromium_path() else "no chromium (Debian's package: bash scripts/install_chromium.sh)")
needs_browser = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

#: what the page's script checks in the browser: images decoded, drawn extents inside each canvas,
#: text alternatives, header cells, summary rows
PROBE = r"""
(async () => {
  const out = {imgs: [], svgImages: [], outside: [], noAlt: [], noHeader: 0, rows: 0, text: document.body.innerText};
  for (const im of document.images) { await im.decode().catch(() => {}); out.imgs.push([im.alt, im.naturalWidth]); }
  for (const im of document.querySelectorAll('svg image')) {
    const i = new Image(); i.src = im.getAttribute('href');
    await i.decode().catch(() => {}); out.svgImages.push(i.naturalWidth);
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    const box = svg.getBoundingClientRect();
    for (const el of svg.querySelectorAll('text, rect, line, circle, polygon, polyline')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        out.outside.push([svg.getAttribute('aria-label'), el.tagName, (el.textContent || '').slice(0, 60),
                          [r.left - box.left, r.right - box.right, r.top - box.top, r.bottom - box.bottom]]);
    }
  }
  for (const el of document.querySelectorAll('img')) if (!el.alt) out.noAlt.push('img');
  for (const el of document.querySelectorAll('svg:not([aria-hidden="true"])'))
    if (el.getAttribute('role') !== 'img' || !el.getAttribute('aria-label')) out.noAlt.push('svg ' + el.outerHTML.slice(0, 80));
  for (const t of document.querySelectorAll('table')) if (!t.querySelector('th')) out.noHeader++;
  out.rows = document.querySelectorAll('table.summary tbody tr').length;
  return out;
})()
"""


def _nonwhite(png: bytes) -> float:
    """The fraction of a screenshot's pixels that differ from the background (white)."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("L")
    hist = im.histogram()
    return 1.0 - hist[255] / sum(hist)


def _check_page(path: Path, n_rows: int, verdicts: dict[str, str], shot: Path) -> dict:
    with Chromium() as browser:
        page = browser.open(path)
        got = page.evaluate(PROBE)
        png = page.screenshot(full=True)
        errors, requests = page.console_errors, page.requests
    shot.write_bytes(png)
    assert errors == [], errors
    assert all(u == path.resolve().as_uri() or u.startswith("data:") for u in requests), requests  # nothing fetched
    assert all(w > 0 for _, w in got["imgs"]) and all(w > 0 for w in got["svgImages"]), got["imgs"]
    assert got["svgImages"], "no photo on the page"
    assert got["outside"] == [], got["outside"][:5]
    assert got["noAlt"] == [] and got["noHeader"] == 0
    assert got["rows"] == n_rows
    for name, word in verdicts.items():
        assert f"{word} {name}" in got["text"], (name, word)
    assert _nonwhite(png) >= 0.01
    return got


def _artifacts(folder: Path) -> list[dict]:
    return json.loads((folder / "manifest.json").read_text())["artifacts"]


def _name(a: dict) -> str:
    return f"{a['model']} {a['target']}/{a['precision']}/{a['head']}"


@needs_browser
def test_the_release_page_in_chromium(rfb_release, tmp_path):
    arts = _artifacts(rfb_release)
    page = rfb_release / "REPORT.html"
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    got = _check_page(page, len(arts), {_name(a): "PASS" if a["parity"]["passed"] else "FAIL" for a in arts},
                      tmp_path / "release.png")
    assert "Where the error grows" in got["text"] and "first over tolerance" in text or "every layer within" in text
    # every int8 artifact has its curve; none was skipped
    assert text.count('aria-label="layer-by-layer relative error of') == sum(a["precision"].startswith("int8") for a in arts)


def test_zoo_report_html_is_the_release_page_byte_for_byte(rfb_release, tmp_path):
    """The same release gives the same page: `zoo report` now (its own worker processes) and `zoo release`
    then (the release's warm workers)."""
    out = tmp_path / "page.html"
    zoo("report", rfb_release, "--format", "html", "--out", out, check=0)
    assert out.read_bytes() == (rfb_release / "REPORT.html").read_bytes()


def _cut(src: Path, dst: Path, keep, fail: str | None = None) -> Path:
    """A copy of release ``src`` whose manifest lists only the artifacts ``keep`` accepts; ``fail``: the
    target/precision whose recorded verdict is a parity failure (as a failing run records it)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("REPORT.*"))
    m = json.loads((dst / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if keep(a)]
    for a in m["artifacts"]:
        if fail and f"{a['target']}/{a['precision']}" == fail:
            d = a["parity"]["detections"]
            d.update(matched=d["reference"] - 9, missed=9, extra=4, passed=False)
            a["parity"]["passed"] = False
            a["parity"]["failures"] = [f"detections: {d['matched']}/{d['reference']} matched at IoU >= 0.5, 4 extra "
                                       "(worst image 1.jpg: 5 missed, 2 extra)"]
    (dst / "manifest.json").write_text(json.dumps(m, indent=2))
    return dst


@needs_browser
def test_two_releases_side_by_side_and_a_failing_artifact(rfb_release, tmp_path):
    # rfb-320 MNN full int8 is withheld from the default matrix (zoo.core.withheld): its int8-weight flavour
    new = _cut(rfb_release, tmp_path / "new",
               lambda a: a["target"] in ("onnx", "mnn") and a["precision"] in ("fp32", "int8-weight"), fail="mnn/int8-weight")
    out = tmp_path / "changes.html"
    zoo("report", rfb_release, new, "--format", "html", "--out", out, check=0)
    arts = _artifacts(new)
    verdicts = {_name(a): "FAIL" if a["target"] == "mnn" and a["precision"] == "int8-weight" else "PASS" for a in arts}
    got = _check_page(out, len(arts), verdicts, tmp_path / "changes.png")
    text = out.read_text()
    changes = text.split('id="changes"', 1)[1].split("</section>", 1)[0]
    assert "removed" in changes and "PASS</span> → <span class=\"v fail\">FAIL" in changes
    # failures first, with their photo
    assert text.index('id="failures"') < text.index('id="summary"')
    failures = text.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "rfb-320 mnn/int8-weight/raw" in failures and 'class="photo"' in failures
    assert "Failures first: 1" in got["text"]


def test_bad_inputs_to_the_html_report(rfb_release, tmp_path):
    # (rfb-320 ONNX int8 is withheld from the default matrix, zoo.core.withheld: ncnn's int8)
    small = _cut(rfb_release, tmp_path / "small", lambda a: a["target"] == "ncnn" and a["precision"] == "int8")
    # --out onto the release's own files or folders: one line, exit 1, nothing written
    before = (small / "manifest.json").read_bytes()
    for bad in (small / "manifest.json", small / "golden" / "page.html", small / "ncnn" / "page.html",
                small / "cards" / "page.html"):
        assert_clean_error(zoo("report", small, "--format", "html", "--out", bad), "--out")
    assert (small / "manifest.json").read_bytes() == before
    assert not (small / "golden" / "page.html").exists() and not (small / "ncnn" / "page.html").exists()
    # a damaged compat.json: a marked section; --no-diff: the curve is skipped and the page says why
    (small / "compat.json").write_text('{"schema": "ultraface-zoo/compat/1", "results": [{"artifact": 3}]}')
    page = tmp_path / "p.html"
    zoo("report", small, "--format", "html", "--no-diff", "--out", page, check=0)
    text = page.read_text()
    assert 'class="box damaged"' in text and "compat.json unusable" in text
    assert "skipped: --no-diff" in text
    # a damaged bench.json: one line, exit 1, nothing written
    (small / "bench.json").write_text('{"results": [{"threads": "two"}]}')
    out = tmp_path / "q.html"
    assert_clean_error(zoo("report", small, "--format", "html", "--out", out), "bench.json")
    assert not out.exists()
    (small / "bench.json").write_text('{"results": [')
    assert_clean_error(zoo("report", small, "--format", "md"), "bench.json")
    assert_clean_error(zoo("report", small, small, small, "--format", "html"), "two")
    # the parity photos not at hand (never fetched by a report): the golden kit's photos, and the page says so
    (small / "bench.json").unlink()
    empty = tmp_path / "no-photos"
    empty.mkdir()
    zoo("report", small, "--format", "html", "--no-diff", "--out", page, env={"ZOO_IMAGES_DIR": str(empty)}, check=0)
    text = page.read_text()
    assert "is not at hand" in text and "golden kit" in text and text.count('class="photo"') >= 2
