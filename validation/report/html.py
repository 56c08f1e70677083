"""The report as one self-contained HTML page: verdicts, the faces, the curves; two releases side by side.

    render_html(rep, views, old=None) -> str

``rep`` is `build_report` of one release folder; ``views`` what was computed at report time (the photo
of each artifact run through it and PyTorch, the layer-by-layer error; zoo.pipeline.report_page makes
them): ``{"photos": {id: {"name", "source", "width", "height", "jpeg"}}, "artifacts": {primary: {"faces",
"faces_note", "diff", "diff_note"}}, "notes": [...]}``. ``old``: the report of an older release, for
"what changed". CSS and images are inline (no script, nothing fetched: the page works from file://
offline), and the same inputs give the same bytes (no dates but the bench's own, fixed formats).
"""
from __future__ import annotations

import base64
import math
from pathlib import Path

from zoo.core.version import __version__
from zoo.validation.compat import summarize, runs_on, tables
from zoo.validation.parity import EVIDENCE_RULED, SIZE_BUCKETS
from zoo.validation.report import charts
from zoo.validation.report.collect import result_for
from zoo.validation.report.svg import esc

#: box styles of the faces: (colour, stroke-dasharray or None, width)
KEPT, MISSED, EXTRA = ("#1a9850", None, 2.0), ("#d7301f", "7 4", 2.5), ("#2166ac", "1.5 3.5", 2.8)

CSS = """
:root{--pass:#137333;--pass-bg:#e6f4ea;--fail:#a50e0e;--fail-bg:#fce8e6;--warn:#8a5a00;--warn-bg:#fff4d6;--muted:#5f6368;
--line:#dadce0;font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:14px;color:#202124}
body{margin:0;background:#fff}
main{max-width:1320px;margin:0 auto;padding:16px 24px 48px}
header h1{font-size:22px;margin:8px 0 4px}
h2{font-size:18px;margin:28px 0 8px;padding-top:8px;border-top:2px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
p,li{line-height:1.45}
.muted{color:var(--muted)}
nav a{margin-right:14px}
a{color:#1a5fb4}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f4;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failing td{background:#fff8f7}
code,.sha{font-family:"DejaVu Sans Mono",ui-monospace,monospace;font-size:12px}
.sha{word-break:break-all}
.v{display:inline-block;padding:1px 7px;border-radius:10px;font-weight:700;font-size:12px;white-space:nowrap}
.v.pass{background:var(--pass-bg);color:var(--pass)}
.v.fail{background:var(--fail-bg);color:var(--fail);border:1px solid var(--fail)}
.v.none{background:#f1f3f4;color:var(--muted)}
.v.warn{background:var(--warn-bg);color:var(--warn)}
.box{border:1px solid var(--line);border-radius:6px;padding:10px 14px;margin:10px 0}
.box.fail{border-color:var(--fail);background:#fffafa}
.box h2{border-top:none;margin-top:4px;padding-top:0}
.box.damaged{border:2px dashed var(--warn);background:var(--warn-bg)}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{border:1px solid var(--fail);border-radius:6px;padding:8px;max-width:420px;background:#fffafa}
section.art{border-top:1px solid var(--line);padding-top:4px;margin-top:18px}
.grid{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:4px 0}
figcaption{font-size:12px;color:var(--muted);max-width:480px}
svg.photo{display:block;width:100%;height:auto;background:#eee}
.closeups{display:flex;flex-wrap:wrap;gap:6px;max-width:480px}
figure.close{margin:0;width:110px}
figure.close figcaption{font-size:11px}
a.thumb{display:block;width:480px;max-width:100%;border:1px solid var(--line)}
a.thumb:focus,a.thumb:hover{outline:2px solid #1a5fb4}
.lightbox{display:none;position:fixed;inset:0;background:#111;z-index:10;overflow:auto;padding:16px;box-sizing:border-box}
.lightbox:target{display:block}
.lightbox svg.photo{max-width:min(100%,1600px);margin:0 auto}
.lightbox a.close{display:inline-block;color:#fff;background:#333;padding:4px 10px;margin-bottom:8px;border-radius:4px}
.chart{max-width:100%;height:auto;font-family:"DejaVu Sans",system-ui,sans-serif}
.legend{display:flex;flex-wrap:wrap;gap:16px;font-size:12px;margin:4px 0}
.legend span{display:inline-flex;align-items:center;gap:5px}
ul.tight{margin:4px 0;padding-left:20px}
.changed td.c{background:#fff4d6}
"""


def _e(v) -> str:
    return esc(v)


def _f(v, nd=1, dash="—") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return dash
    return f"{v:.{nd}f}"


def _ms(v) -> str:
    return "—" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def _mib(b) -> str:
    return "—" if b is None else f"{b / (1 << 20):.3f}"


def art_id(a: dict) -> str:
    """The page anchor of an artifact: its model and key, readable."""
    raw = f"{a['model']}-{a['label']}"
    return "a-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in raw)


def verdict(p: dict) -> tuple[str, str]:
    """(css class, word) of a parity summary."""
    if p.get("passed") is None:
        return "none", "NOT RUN"
    return ("pass", "PASS") if p["passed"] else ("fail", "FAIL")


def _badge(cls: str, word: str) -> str:
    return f'<span class="v {cls}">{_e(word)}</span>'


def _counts(p: dict, strict: bool = False) -> str:
    if strict:
        st = p.get("strict") or {}
        if st.get("matched") is None or p.get("reference") is None:
            return "—"
        return f"{st['matched']} / {p['reference']} / {st.get('extra', '—')}"
    if p.get("matched") is None or p.get("reference") is None:
        return "—"
    return f"{p['matched']} / {p['reference']} / {p.get('extra', '—')}"


def _evidence(a: dict) -> str:
    ev = a["parity"].get("evidence") or {}
    if ev.get("faces") is None or ev.get("images") is None:
        return "—"
    s = f"{ev['faces']} faces / {ev['images']} photos"
    if ev.get("strong") is False and a["precision"].split("-")[0] in EVIDENCE_RULED:
        s += " (weak)"
    if ev.get("overlap"):
        s += f", {len(ev['overlap'])} also calibrated on"
    return s


def _p50(a: dict, t: int | None) -> str:
    if t is None:
        return "—"
    r = result_for(a, t)
    if not r:
        return "—"
    return "failed" if r.get("error") else _ms(r.get("p50_ms"))


def _table(head: list[str], rows: list[str], num_cols: set[int] = frozenset(), cls: str = "") -> str:
    th = "".join(f'<th scope="col"{" class=n" if i in num_cols else ""}>{h}</th>' for i, h in enumerate(head))
    return f'<table{f" class={cls}" if cls else ""}><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _td(v, num: bool = False, cls: str = "") -> str:
    c = " ".join(x for x in ("n" if num else "", cls) if x)
    attr = f' class="{c}"' if c else ""
    return f"<td{attr}>{v}</td>"


# --------------------------------------------------------------------------- photos and faces

def _photo_defs(photos: dict) -> str:
    """Each photo once, as an SVG <image> every artifact's figure uses (``<use href="#id">``)."""
    if not photos:
        return ""
    ims = []
    for pid, ph in sorted(photos.items()):
        data = base64.b64encode(ph["jpeg"]).decode()
        ims.append(f'<image id="{_e(pid)}" width="{ph["width"]}" height="{ph["height"]}" preserveAspectRatio="none" '
                   f'href="data:image/jpeg;base64,{data}"/>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0" style="position:absolute" aria-hidden="true">'
            f"<defs>{''.join(ims)}</defs></svg>")


def _rect(box, style, title: str | None) -> str:
    color, dash, width = style
    x1, y1, x2, y2 = box
    d = f' stroke-dasharray="{dash}" stroke-linecap="round"' if dash else ""
    return (f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 0):.1f}" height="{max(y2 - y1, 0):.1f}" fill="none" '
            f'stroke="{color}" stroke-width="{width}" vector-effect="non-scaling-stroke"{d}>'
            + (f"<title>{_e(title)}</title></rect>" if title else "</rect>"))


def _faces_svg(faces: dict, ph: dict, pid: str, label: str, gid: str) -> str:
    """The photo with PyTorch's boxes and the artifact's: kept (solid green, the artifact's box thin dark
    over it), missed (PyTorch's box, dashed red), extra (the artifact's box, dotted blue). The photo and
    its boxes are the group ``gid``, which the full-size view and the close-ups reuse (`_view`)."""
    w, h = ph["width"], ph["height"]
    parts = [f'<use href="#{_e(pid)}"/>']
    for rb, rs, gb, gs in faces["kept"]:
        parts.append(_rect(rb, KEPT, f"kept: PyTorch {rs:.3f}, artifact {gs:.3f}"))
        parts.append(_rect(gb, ("#102a12", None, 1.0), None))
    for b, sc in faces["missed"]:
        parts.append(_rect(b, MISSED, f"missed: PyTorch {sc:.3f}, the artifact has none"))
    for b, sc in faces["extra"]:
        parts.append(_rect(b, EXTRA, f"extra: artifact {sc:.3f}, PyTorch has none"))
    return _view(f"0 0 {w} {h}", _faces_name(faces, ph, label), f'<g id="{_e(gid)}">{"".join(parts)}</g>')


def _faces_name(faces: dict, ph: dict, label: str) -> str:
    c = faces["counts"]
    return (f"{ph['name']} through {label}: {len(faces['kept'])} faces kept, {len(faces['missed'])} missed, "
            f"{len(faces['extra'])} extra (PyTorch: {c.get('reference', '?')} faces)")


def _view(viewbox: str, name: str, body: str) -> str:
    """An SVG image of (part of) a photo figure: ``body`` is the group itself or a ``<use>`` of it."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="photo" viewBox="{viewbox}" role="img" '
            f'aria-label="{_e(name)}"><title>{_e(name)}</title>{body}</svg>')


#: close-ups of the faces that differ, shown under the photo
CLOSEUPS = 8


def _closeups(faces: dict, ph: dict, gid: str, label: str) -> str:
    """The missed and extra faces (then those kept only under the margin) up close: the figure's group
    again, cropped by the viewBox around each face."""
    picks = [("missed", b, s) for b, s in faces["missed"]] + [("extra", b, s) for b, s in faces["extra"]]
    picks += [("kept under the margin", g, gs) for _, _, g, gs in faces["kept"] if gs < 0.7]
    out = []
    for kind, (x1, y1, x2, y2), score in picks[:CLOSEUPS]:
        side = max(x2 - x1, y2 - y1, 16.0) * 2.2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        vx = min(max(cx - side / 2, 0.0), max(ph["width"] - side, 0.0))
        vy = min(max(cy - side / 2, 0.0), max(ph["height"] - side, 0.0))
        name = f"{kind} face of {label}, score {score:.2f}, close up"
        crop = _view(f"{vx:.1f} {vy:.1f} {side:.1f} {side:.1f}", name, f'<use href="#{gid}"/>')
        out.append(f'<figure class="close">{crop}<figcaption>{_e(kind)} {score:.2f}</figcaption></figure>')
    if not out:
        return ""
    more = len(picks) - len(out)
    return (f'<div class="closeups">{"".join(out)}</div>'
            + (f'<p class="muted">{more} more in the full-size photo.</p>' if more > 0 else ""))


def _legend_faces() -> str:
    def sample(style, thin=False) -> str:
        color, dash, width = style
        d = f' stroke-dasharray="{dash}" stroke-linecap="round"' if dash else ""
        inner = '<rect x="7" y="5" width="18" height="10" fill="none" stroke="#102a12" stroke-width="1"/>' if thin else ""
        return (f'<svg width="32" height="20" viewBox="0 0 32 20" role="img" aria-label="box style">'
                f'<rect x="4" y="3" width="24" height="14" fill="#f3f3f3" stroke="{color}" stroke-width="{width}"{d}/>{inner}</svg>')

    return ('<div class="legend">'
            f"<span>{sample(KEPT, True)} kept: PyTorch's face (solid green), the artifact's box (thin dark)</span>"
            f"<span>{sample(MISSED)} missed: PyTorch's face, the artifact has none (dashed red)</span>"
            f"<span>{sample(EXTRA)} extra: the artifact's box, PyTorch has none (dotted blue)</span></div>")


def _figure(a: dict, view: dict, photos: dict, thumb_only: bool = False) -> str:
    """The artifact's photo figure (its section: the group itself, the close-ups and the full-size view;
    ``thumb_only``, the failures box: a ``<use>`` of the section's group)."""
    faces = (view or {}).get("faces")
    if not faces or faces.get("photo") not in photos:
        return f'<p class="muted">{_e((view or {}).get("faces_note") or "no photo: not run")}</p>'
    pid, ph = faces["photo"], photos[faces["photo"]]
    aid = art_id(a)
    gid, label = f"g-{aid}", f"{a['model']} {a['label']}"
    box = f"0 0 {ph['width']} {ph['height']}"
    use = f'<use href="#{gid}"/>'
    svg = _view(box, _faces_name(faces, ph, label), use) if thumb_only else _faces_svg(faces, ph, pid, label, gid)
    c = faces["counts"]
    cap = (f"{_e(ph['name'])} ({_e(ph['source'])}): {_e(faces['why'])}. Now: {len(faces['kept'])} kept, "
           f"{len(faces['missed'])} missed, {len(faces['extra'])} extra of PyTorch's {c.get('reference', '?')} faces"
           + (f"; {faces['borderline']} kept only under the score margin" if faces.get("borderline") else "") + ".")
    thumb = f'<a class="thumb" href="#full-{aid}" title="open the full-size photo">{svg}</a>'
    if thumb_only:
        return f"<figure>{thumb}<figcaption>{cap}</figcaption></figure>"
    close = _closeups(faces, ph, gid, label)
    full = (f'<div class="lightbox" id="full-{aid}"><a class="close" href="#{aid}">close (back to {_e(a["label"])})</a>'
            f"{_view(box, _faces_name(faces, ph, label) + ', full size', use)}</div>")
    return f"<figure>{thumb}<figcaption>{cap} Select the photo for the full size.</figcaption></figure>{close}{full}"


# --------------------------------------------------------------------------- sections

def _summary(rep: dict, t0: int | None) -> str:
    arts = rep["artifacts"]
    order = sorted(range(len(arts)), key=lambda i: (arts[i]["parity"].get("passed") is not False, i))
    head = ["verdict", "model", "target", "precision", "head", "dynamic", "min runtime",
            "faces kept / PyTorch / extra", "strict", "evidence", "size MiB",
            f"p50 ms ({t0} thread{'s' if (t0 or 1) > 1 else ''})" if t0 else "p50 ms"]
    rows = []
    for f in rep["failed"]:
        err = str(f.get("error", ""))
        rows.append(f'<tr class="failing">{_td(_badge("fail", "FAIL: export failed"))}{_td(_e(f.get("model", "?")))}'
                    f'{_td(_e(f.get("target", "?")))}{_td(_e(f.get("precision", "?")))}{_td(_e(f.get("head", "?")))}'
                    f'{_td("yes" if f.get("dynamic") else "")}{_td(_e(f.get("min_runtime", "")))}'
                    f'<td colspan="5">{_e(err[:300])}</td></tr>')
    for i in order:
        a = arts[i]
        p = a["parity"]
        cls, word = verdict(p)
        link = f'<a href="#{art_id(a)}">{_e(a["target"])}</a>'
        size = f"{a['size_mib']:.3f}"
        rows.append(
            f'<tr{" class=failing" if cls == "fail" else ""}>{_td(_badge(cls, word))}{_td(_e(a["model"]))}'
            f'{_td(link)}{_td(_e(a["precision"]))}'
            f'{_td(_e(a["head"]))}{_td("yes" if a.get("dynamic") else "")}{_td(_e(a.get("min_runtime") or ""))}'
            f'{_td(_counts(p), True)}{_td(_counts(p, strict=True), True)}{_td(_e(_evidence(a)), True)}'
            f'{_td(size, True)}{_td(_p50(a, t0), True)}</tr>')
    return _table(head, rows, num_cols={7, 8, 9, 10, 11}, cls="summary")


def _failures(rep: dict, views: dict) -> str:
    failing = [a for a in rep["artifacts"] if a["parity"].get("passed") is False]
    if not failing and not rep["failed"]:
        return ""
    cards = []
    for a in failing:
        v = views["artifacts"].get(a["primary"]) or {}
        reasons = "".join(f"<li>{_e(f[:400])}</li>" for f in a["parity"].get("failures") or []) or "<li>parity failed</li>"
        cards.append(f'<div class="card">{_badge("fail", "FAIL")} <a href="#{art_id(a)}"><b>{_e(a["model"])} '
                     f'{_e(a["label"])}</b></a><ul class="tight">{reasons}</ul>'
                     f"{_figure(a, v, views['photos'], thumb_only=True)}</div>")
    for f in rep["failed"]:
        cards.append(f'<div class="card">{_badge("fail", "FAIL: export failed")} <b>{_e(f.get("model", "?"))} '
                     f'{_e(f.get("target", "?"))}/{_e(f.get("precision", "?"))}/{_e(f.get("head", "?"))}</b>'
                     f'<p>{_e(str(f.get("error", ""))[:400])}</p><p class="muted">No file was written, so there is no '
                     f"photo to show.</p></div>")
    n = len(failing) + len(rep["failed"])
    return (f'<section id="failures" class="box fail"><h2>Failures first: {n}</h2>'
            f'<div class="cards">{"".join(cards)}</div></section>')


def _compat(rep: dict) -> str:
    out = []
    for c in rep.get("compat") or []:
        name = Path(c["folder"]).name
        if c["problem"]:
            out.append(f'<div class="box damaged" id="compat-damaged"><h3>compat.json unusable ({_e(name)})</h3>'
                       f"<p>{_e(c['problem'])}</p><p>The runtime matrix is left out; run <code>zoo compat "
                       f"{_e(name)}</code> again to rewrite it.</p></div>")
            continue
        doc = c["doc"]
        current = c.get("current") or {}
        results = doc["results"]
        stale = sorted({x["artifact"] for x in results
                        if x.get("sha256") and current.get(x["primary"]) not in (None, x["sha256"])})
        platforms = sorted({str(x["platform"]) for x in results if isinstance(x.get("platform"), str)})
        out.append(f"<p class=muted>`zoo compat` on {_e(doc.get('python', '?'))}"
                   + (f", platforms {_e(', '.join(platforms))}" if platforms else "")
                   + ". Cells: status, faces matched / PyTorch's, largest max abs difference.</p>")
        if platforms:  # artifact x (runtime release, platform)
            cols = sorted({(x["runtime"], x["version"], str(x.get("platform", ""))) for x in results})
            by = {(x["artifact"], x["runtime"], x["version"], str(x.get("platform", ""))): x for x in results}
            arts = list(dict.fromkeys(x["artifact"] for x in results))
            rows = []
            for art in arts:
                cells = []
                for rt, v, pl in cols:
                    x = by.get((art, rt, v, pl))
                    cells.append(_td(_cell(x)))
                rows.append(f"<tr>{_td(_e(art))}{''.join(cells)}</tr>")
            out.append(_table(["artifact", *[_e(f"{rt} {v} · {pl}") for rt, v, pl in cols]], rows))
        else:
            for rt, headers, rows_, notes in tables(doc):
                rows = []
                cells_by = {(x["artifact"], x["version"]): x for x in results if x["runtime"] == rt}
                versions = [h.split(" ")[0] for h in headers]
                for r in rows_:
                    rows.append(f"<tr>{_td(_e(r[0]))}" + "".join(_td(_cell(cells_by.get((r[0], v)), text))
                                                               for v, text in zip(versions, r[1:])) + "</tr>")
                out.append(f"<h3>{_e(rt)}</h3>" + _table(["artifact", *[_e(h) for h in headers]], rows))
                if notes:
                    out.append('<ol class="tight">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ol>")
        out.append('<ul class="tight">' + "".join(
            f"<li>{_e(art)}: " + "; ".join(_e(runs_on(rt, s)) for rt, s in by_rt.items()) + "</li>"
            for art, by_rt in summarize(results).items()) + "</ul>")
        if stale:
            out.append(f'<p class="v warn">stale: {_e(", ".join(stale))} changed since `zoo compat` ran</p>')
    if not out:
        return ""
    return '<section id="compat"><h2>Runtime compatibility</h2>' + "".join(out) + "</section>"


def _cell(x: dict | None, text: str | None = None) -> str:
    if x is None:
        return "—"
    word = text or x["status"]
    cls = "pass" if x["status"] == "PASS" else "fail" if x["status"] in ("FAIL", "cannot-load", "error") else "none"
    return _badge(cls, word)


def _files(a: dict) -> str:
    rows = []
    for f in a.get("file_entries") or []:
        path, sha, size = _e(f["path"]), _e(f["sha256"]), f"{f['bytes']:,}"
        rows.append(f"<tr>{_td(f'<code>{path}</code>')}{_td(size, True)}{_td(f'<span class=sha>{sha}</span>')}</tr>")
    return _table(["file", "bytes", "sha256"], rows, num_cols={1})


def _latency(a: dict) -> str:
    if not a["bench"]:
        return '<p class="muted">Latency: not measured (no bench.json; run <code>zoo bench DIR</code>).</p>'
    rows = []
    for r in a["bench"]:
        if r.get("error"):
            rows.append(f"<tr>{_td(r.get('threads', '?'), True)}<td colspan=6>{_badge('fail', 'bench failed')} "
                        f"{_e(str(r['error'])[:300])}</td></tr>")
            continue
        rows.append(f"<tr>{_td(r.get('threads'), True)}{_td(_ms(r.get('p50_ms')), True)}{_td(_ms(r.get('p90_ms')), True)}"
                    f"{_td(_ms(r.get('p99_ms')), True)}{_td(_ms(r.get('init_ms')), True)}"
                    f"{_td(_f(r.get('peak_rss_mb'), 0), True)}{_td(_e(r.get('runtime') or ''))}</tr>")
    stale = ' <span class="v warn">stale: the file changed since `zoo bench`</span>' if a.get("stale") else ""
    return (f"<h4>Latency by thread count{stale}</h4>"
            + _table(["threads", "p50 ms", "p90 ms", "p99 ms", "init ms", "peak RSS MiB", "runtime"], rows,
                     num_cols={0, 1, 2, 3, 4, 5}))


def _extras(p: dict) -> str:
    """Parity fields of a newer zoo (shown as found)."""
    out = []
    for title, d in (("shift", p.get("shift")), ("more detection figures", p.get("detections_more"))):
        if d:
            out.append(f"<h4>{_e(title)}</h4>" + _table(["field", "value"], [
                f"<tr>{_td(_e(k))}{_td(_e(v if not isinstance(v, dict) else ', '.join(f'{a}: {b}' for a, b in v.items())))}</tr>"
                for k, v in d.items()]))
    return "".join(out)


def _by_size(p: dict) -> str:
    by = p.get("by_size")
    if not by:
        return ""
    rows = [f"<tr>{_td(_e(b + ' px'))}" + "".join(_td("—" if (by.get(b) or {}).get(k) is None else by[b][k], True)
                                                  for k in ("reference", "matched", "missed", "extra")) + "</tr>"
            for b in SIZE_BUCKETS]
    return _table(["face height", "PyTorch's faces", "kept", "missed", "extra"], rows, num_cols={1, 2, 3, 4})


def _artifact(a: dict, view: dict, photos: dict, t0: int | None, diff_on: bool) -> str:
    p = a["parity"]
    cls, word = verdict(p)
    aid = art_id(a)
    facts = (f"{a['size_mib']:.3f} MiB · p50 {_p50(a, t0)} ms" + (f" ({t0} thread{'s' if t0 > 1 else ''})" if t0 else "")
             + f" · kept / PyTorch / extra {_counts(p)} · strict {_counts(p, True)} · evidence {_evidence(a)}"
             + (f" · min IoU {p['min_iou']:.4f}" if p.get("min_iou") is not None else ""))
    fails = ""
    if p.get("failures"):
        fails = '<ul class="tight">' + "".join(f"<li>{_e(f[:400])}</li>" for f in p["failures"]) + "</ul>"
    diff = ""
    if a["precision"].split("-")[0] in ("fp16", "int8"):
        d = (view or {}).get("diff")
        if d:
            top = (f"first over tolerance: <b>{_e(d['first_divergent'])}</b>" if d.get("first_divergent")
                   else "every layer within tolerance")
            if d.get("largest_growth"):
                top += f"; largest growth at <b>{_e(d['largest_growth'])}</b>"
            diff = (f"<h4>Where the error grows</h4><p class=muted>`zoo diff` on the photo above ({_e(d.get('runtime'))}, "
                    f"{len(d['layers'])} mapped layers): {top}.</p>" + charts.error_curve(d, f"{a['model']} {a['label']}"))
        else:
            why = (view or {}).get("diff_note") or ("not computed: --no-diff" if not diff_on else "not computed")
            diff = f'<h4>Where the error grows</h4><p class="muted">{_e(why)}</p>'
    return (f'<section class="art" id="{aid}"><h3>{_badge(cls, word)} {_e(a["model"])} {_e(a["label"])}</h3>'
            f'<p>{_e(facts)}</p>{fails}<div class="grid"><div>{_figure(a, view, photos)}</div>'
            f"<div>{_by_size(p)}{_latency(a)}{_extras(p)}</div></div>{diff}<h4>Files</h4>{_files(a)}</section>")


# --------------------------------------------------------------------------- two releases

def _key(a: dict) -> tuple:
    return (a["model"], a["label"])


def _changes(old: dict, new: dict) -> str:
    """What changed from ``old`` to ``new`` per artifact key: verdict, faces kept, size, p50, sha256."""
    t_old = (old["bench"]["threads"] or [None])[0]
    t_new = (new["bench"]["threads"] or [None])[0]
    t = t_new if t_new == t_old else None
    o = {_key(a): a for a in old["artifacts"]}
    n = {_key(a): a for a in new["artifacts"]}
    keys = list(dict.fromkeys([*n, *o]))
    rows, changed = [], 0
    for k in keys:
        a, b = o.get(k), n.get(k)
        cells, diff = [], False
        if a is None or b is None:
            status = "added" if a is None else "removed"
            x = b or a
            vc, vw = verdict(x["parity"])
            rows.append((0, f'<tr class="changed">{_td(_e(k[0]))}{_td(_e(k[1]))}{_td(_badge("warn", status), cls="c")}'
                            f'<td colspan="5">{_badge(vc, vw)} {_e(_counts(x["parity"]))} · {x["size_mib"]:.3f} MiB · '
                            f'<span class=sha>{_e(x["sha256"][:16])}</span></td></tr>'))
            changed += 1
            continue
        va, vb = verdict(a["parity"]), verdict(b["parity"])
        d = va != vb
        cells.append(_td(f"{_badge(*va)} → {_badge(*vb)}" if d else _badge(*vb), cls="c" if d else ""))
        diff |= d
        ka, kb = _counts(a["parity"]), _counts(b["parity"])
        d = ka != kb
        cells.append(_td(_e(f"{ka} → {kb}" if d else kb), True, "c" if d else ""))
        diff |= d
        d = a["size_bytes"] != b["size_bytes"]
        pct = (b["size_bytes"] - a["size_bytes"]) / a["size_bytes"] * 100 if a["size_bytes"] else 0.0
        cells.append(_td(f"{a['size_bytes']:,} → {b['size_bytes']:,} ({pct:+.1f}%)" if d else f"{b['size_bytes']:,}",
                         True, "c" if d else ""))
        diff |= d
        ra, rb = (result_for(a, t) if t else None), (result_for(b, t) if t else None)
        la = ra.get("p50_ms") if ra and not ra.get("error") else None
        lb = rb.get("p50_ms") if rb and not rb.get("error") else None
        if la is not None and lb is not None:
            pct = (lb - la) / la * 100 if la else 0.0
            big = abs(pct) >= 10
            cells.append(_td(f"{_ms(la)} → {_ms(lb)} ({pct:+.0f}%)", True, "c" if big else ""))
        else:
            cells.append(_td(f"{_ms(la)} → {_ms(lb)}", True))
        d = a["sha256"] != b["sha256"]
        cells.append(_td(f'<span class=sha>{_e(a["sha256"][:12])} → {_e(b["sha256"][:12])}</span>' if d else "same",
                         cls="c" if d else ""))
        diff |= d
        changed += diff
        rows.append((0 if diff else 1, f'<tr{" class=changed" if diff else ""}>{_td(_e(k[0]))}{_td(_e(k[1]))}'
                                       f'{_td("changed" if diff else "unchanged")}{"".join(cells)}</tr>'))
    rows = [r for _, r in sorted(enumerate(rows), key=lambda x: (x[1][0], x[0]))]
    lat = f"p50 ms ({t} thread{'s' if (t or 1) > 1 else ''})" if t else "p50 ms (not comparable: no common bench)"
    names = f"{_e(Path(old['folders'][0]).name)} → {_e(Path(new['folders'][0]).name)}"
    return (f'<section id="changes"><h2>What changed: {names}</h2><p>{changed} of {len(keys)} artifact keys changed '
            f"(verdict, faces kept, size or sha256; latency marked where it moved by 10% or more).</p>"
            + _table(["model", "artifact", "status", "verdict", "faces kept / PyTorch / extra", "bytes", lat, "sha256"],
                     [r for _, r in rows], num_cols={4, 5, 6}) + "</section>")


# --------------------------------------------------------------------------- the page

def render_html(rep: dict, views: dict | None = None, old: dict | None = None) -> str:
    views = views or {"photos": {}, "artifacts": {}, "notes": [], "diff": False}
    views.setdefault("photos", {})
    views.setdefault("artifacts", {})
    arts, bench = rep["artifacts"], rep["bench"]
    t0 = (bench["threads"] or [None])[0]
    models = [m["id"] for m in rep["models"]]
    folder = Path(rep["folders"][0]).name if rep["folders"] else ""
    n_fail = sum(1 for a in arts if a["parity"].get("passed") is False) + len(rep["failed"])
    n_pass = sum(1 for a in arts if a["parity"].get("passed"))
    title = f"UltraFace release {folder}: {', '.join(models) or 'no artifacts'}"
    head_badge = _badge("fail", f"{n_fail} FAIL") if n_fail else _badge("pass", "ALL PASS")
    exports = f" ({len(rep['failed'])} export failures)" if rep["failed"] else ""
    m = bench.get("machine") or {}
    if bench["present"]:
        s = bench.get("settings") or {}
        bench_line = (f"Latency: {_e(m.get('cpu', '?'))}, {_e(m.get('cores_available', '?'))} cores available, batch 1, "
                      f"p50 of {_e(s.get('runs', '?'))} runs x {_e(s.get('rounds', '?'))} rounds, measured "
                      f"{_e(bench.get('timestamp') or '?')} (bench.json).")
    else:
        bench_line = ("No bench.json: sizes and parity only. Run <code>zoo bench DIR</code> on the target machine, then "
                      "<code>zoo report DIR --format html</code> again, for latency.")
    L = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f"<meta name=\"generator\" content=\"ultraface-zoo {_e(__version__)}\">",
         f"<title>{_e(title)}</title><style>{CSS}</style></head><body>", _photo_defs(views["photos"]), "<main>"]
    L.append(f"<header><h1>{_e(title)}</h1><p>{head_badge} {len(arts)} artifacts: {n_pass} PASS, "
             f"{n_fail} FAIL{exports}. "
             f"Each artifact was run in its own runtime on real photos and compared with the PyTorch model.</p>"
             f"<p class=muted>{bench_line}</p></header>")
    nav = ['<a href="#summary">Summary</a>']
    if old is not None:
        nav.insert(0, '<a href="#changes">What changed</a>')
    if rep.get("compat"):
        nav.append('<a href="#compat">Runtime compatibility</a>')
    nav += ['<a href="#charts">Charts</a>', '<a href="#artifacts">Artifacts</a>', '<a href="#notes">Notes</a>']
    L.append(f'<nav aria-label="sections">{"".join(nav)}</nav>')
    if old is not None:
        L.append(_changes(old, rep))
    L.append(_failures(rep, views))
    L.append('<section id="summary"><h2>Summary</h2><p class=muted>One row per artifact, failures first. Faces: '
             "PyTorch's faces the artifact keeps / PyTorch's faces / the artifact's extra faces, under the tier's score "
             "margin (0.05 for int8, 0.01 for fp16); strict: with no margin. Evidence: PyTorch's faces on how many "
             "photos stand behind the verdict.</p>" + _summary(rep, t0) + "</section>")
    L.append(_compat(rep))
    L.append('<section id="charts"><h2>Charts</h2>')
    sl = charts.size_latency(rep)
    L.append(f"<figure>{sl}<figcaption>Median latency (p50) against size, one panel per thread count; whiskers: "
             "the spread of the round medians; dashed grey: the original's published .pth sizes.</figcaption></figure>"
             if sl else '<p class="muted">Size against latency: no bench.json.</p>')
    fk = charts.faces_kept(rep)
    if fk:
        L.append(f"<figure>{fk}<figcaption>Faces kept by each artifact; hover a marker for its counts.</figcaption></figure>")
    L.append(f"<figure>{charts.published(rep)}<figcaption>{_e(rep['reference']['source'])}: published figures on "
             "other hardware, never mixed with ours.</figcaption></figure></section>")
    L.append('<section id="artifacts"><h2>Artifacts</h2>' + _legend_faces())
    if views.get("photo_note"):
        L.append(f'<p class="v warn">{_e(views["photo_note"])}</p>')
    for a in arts:
        L.append(_artifact(a, views["artifacts"].get(a["primary"]), views["photos"], t0, views.get("diff", True)))
    L.append("</section>")
    notes = list(rep["notes"]) + list(views.get("notes") or [])
    skipped = [(a, (views["artifacts"].get(a["primary"]) or {}).get("diff_note")) for a in arts
               if a["precision"].split("-")[0] in ("fp16", "int8") and not (views["artifacts"].get(a["primary"]) or {}).get("diff")]
    L.append('<section id="notes"><h2>Notes</h2><ul class="tight">')
    if skipped:
        L.append("<li>Where the error grows: skipped for " + "; ".join(
            f"{_e(a['model'])} {_e(a['label'])} ({_e(why or 'not computed')})" for a, why in skipped) + ".</li>")
    L += [f"<li>{_e(n)}</li>" for n in notes]
    if not skipped and not notes:
        L.append("<li>Nothing to note.</li>")
    L.append(f"</ul><p class=muted>ultraface-zoo {_e(__version__)}. Published figures are the original's, on other "
             "hardware.</p></section></main></body></html>")
    return "\n".join(x for x in L if x) + "\n"
