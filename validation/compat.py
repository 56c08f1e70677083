"""compat.json: what `zoo compat` found, beside a release's manifest (never inside its hashes), read back
checked for `zoo report`. Whatever the file holds, reading it gives the document or one problem line.

A document: ``{"schema": SCHEMA, "python": ..., "results": [cell, ...], ...}``; a cell is one artifact in
one runtime release: ``artifact, model, target, precision, head, primary, sha256, runtime, package,
version, rank, status, message, parity`` with ``status`` one of STATUSES.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

COMPAT_FILE = "compat.json"
SCHEMA = "ultraface-zoo/compat/1"
#: PASS / FAIL: loaded and ran, parity verdict; cannot-load: the runtime refused the artifact (its message);
#: unavailable: no such release for this Python/platform; error: the environment itself failed
STATUSES = ("PASS", "FAIL", "cannot-load", "unavailable", "error")
MAX_BYTES = 16 << 20
_TEXT_KEYS = ("artifact", "model", "target", "precision", "head", "primary", "runtime", "package", "version")


def version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v))


def _cell_problem(c, i: int) -> str | None:
    if not isinstance(c, dict):
        return f"results[{i}] is not an object"
    for k in _TEXT_KEYS:
        if not isinstance(c.get(k), str) or not c[k] or len(c[k]) > 300:
            return f"results[{i}].{k} must be short non-empty text"
    if c.get("status") not in STATUSES:
        return f"results[{i}].status must be one of {', '.join(STATUSES)}"
    if c.get("message") is not None and not isinstance(c["message"], str):
        return f"results[{i}].message must be text or null"
    if not isinstance(c.get("rank", 1), int) or isinstance(c.get("rank", 1), bool):
        return f"results[{i}].rank must be an integer"
    if c.get("sha256") is not None and not isinstance(c["sha256"], str):
        return f"results[{i}].sha256 must be text or null"
    mr = c.get("min_runtime", "")
    if not isinstance(mr, str) or len(mr) > 80 or (mr and mr.count("==") != 1):
        return f"results[{i}].min_runtime must be NAME==VERSION (short text)"
    p = c.get("parity")
    if p is not None:
        if not isinstance(p, dict):
            return f"results[{i}].parity must be an object or null"
        for k in ("matched", "reference", "extra"):
            v = p.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                return f"results[{i}].parity.{k} must be a count"
        mx = p.get("max_abs", {})
        if not isinstance(mx, dict) or not all(
            isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)))
            for k, v in mx.items()
        ):
            return f"results[{i}].parity.max_abs must map output names to finite numbers"
    return None


def compat_problem(doc) -> str | None:
    """What is wrong with a compat document (None: nothing)."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("schema") != SCHEMA:
        return f"schema is {str(doc.get('schema'))[:40]!r}, expected {SCHEMA!r}"
    if not isinstance(doc.get("results"), list):
        return "no 'results' list"
    for i, c in enumerate(doc["results"]):
        problem = _cell_problem(c, i)
        if problem:
            return problem
    for k in ("python", "created", "zoo_version"):
        if k in doc and not isinstance(doc[k], str):
            return f"{k!r} must be text"
    ev = doc.get("evidence", [])
    if not isinstance(ev, list) or not all(isinstance(e, str) for e in ev):
        return "'evidence' must be a list of text"
    return None


def read_compat(path: Path) -> tuple[dict | None, str | None]:
    """(document, None) or (None, one line saying what is wrong with the file)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            return None, f"{path} is {path.stat().st_size} bytes: not a compat.json of ours"
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
    except (ValueError, RecursionError) as e:
        return None, f"{path} is not valid JSON ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})"
    problem = compat_problem(doc)
    if problem:
        return None, f"{path} is damaged: {problem}"
    return doc, None


def _order(c: dict) -> tuple:
    return (c.get("rank", 1), version_key(c["version"]))


def summarize(results: list[dict]) -> dict:
    """Per artifact, per runtime: the releases tested (oldest first) with their status, the oldest
    passing one, whether every tested release from it on passes, ``runs_from``: the oldest release from
    which every newer tested one passes (``runs on RUNTIME >= X``; None when the newest tested one does
    not pass), and for an artifact converted for an older release (`zoo export --min-runtime`)
    ``built_for`` (NAME==VERSION) and ``built_for_holds`` (every tested release of NAME from VERSION on
    passes; None: none tested)."""
    out: dict = {}
    for c in results:
        out.setdefault(c["artifact"], {}).setdefault(c["runtime"], []).append(c)
    summary = {}
    for art, by_rt in out.items():
        summary[art] = {}
        for rt, cells in by_rt.items():
            cells = sorted(cells, key=_order)
            tested = [c for c in cells if c["status"] != "unavailable"]
            passing = [c for c in tested if c["status"] == "PASS"]
            oldest = passing[0] if passing else None
            from_oldest = tested[tested.index(oldest):] if oldest else []
            runs_from = None
            for c in reversed(tested):  # the longest run of passes ending at the newest tested release
                if c["status"] != "PASS":
                    break
                runs_from = c
            built_for = next((c["min_runtime"] for c in cells if c.get("min_runtime")), "")
            name, _, floor = built_for.partition("==")
            claimed = [c for c in tested if name == rt and version_key(c["version"]) >= version_key(floor)] if built_for else []
            summary[art][rt] = {
                "tested": [{"version": c["version"], "package": c["package"], "status": c["status"],
                            "alias": c.get("rank", 1) == 0} for c in cells],
                "oldest_passing": oldest["version"] if oldest else None,
                "oldest_passing_package": oldest["package"] if oldest else None,
                "oldest_is_alias": bool(oldest) and oldest.get("rank", 1) == 0,
                "all_newer_pass": bool(oldest) and all(c["status"] == "PASS" for c in from_oldest),
                "runs_from": runs_from["version"] if runs_from else None,
                **({"built_for": built_for,
                    "built_for_holds": all(c["status"] == "PASS" for c in claimed) if claimed else None}
                   if built_for and name == rt else {}),
            }
    return summary


def runs_on(rt: str, s: dict) -> str:
    """``runs on mnn >= 3.1.0 (tested: 3.0.0 cannot-load, 3.1.0 PASS, ...)`` for one summary entry. The
    ``>= X`` is the oldest release from which every newer tested one passes: a failure is never inside
    the range claimed (3.0.0 PASS, 3.4.1 cannot-load, 3.6.1 PASS: ``>= 3.6.1; also 3.0.0``)."""
    tested = ", ".join(f"{t['version']}{' ' + t['package'] if t.get('alias') else ''} {t['status']}" for t in s["tested"])
    old = s["oldest_passing"]
    runs_from = s.get("runs_from", old if s["all_newer_pass"] else None)
    passing = [t["version"] for t in s["tested"] if t["status"] == "PASS"]
    if old is None:
        head = f"runs on no tested {rt} release"
    elif runs_from is not None:
        entry = next((t for t in s["tested"] if t["version"] == runs_from and t["status"] == "PASS"), {})
        head = f"runs on {rt} >= {runs_from}" + (f" ({entry['package']})" if entry.get("alias") else "")
        older = passing[:passing.index(runs_from)] if runs_from in passing else []
        if older:
            head += f"; also on {', '.join(older)}"
    else:
        failing = [f"{t['version']} ({t['status']})" for t in s["tested"] if t["status"] not in ("PASS", "unavailable")]
        head = f"runs on {rt} {', '.join(passing)} only; not on {', '.join(failing)}"
    if s.get("built_for"):
        holds = s.get("built_for_holds")
        head += f"; built for {s['built_for']} and newer" + (
            "" if holds else " (not borne out: see the tested releases)" if holds is False else " (not tested)")
    return f"{head} (tested: {tested})"


def cell_text(c: dict) -> str:
    """A table cell: the status and, when it ran, the parity figures."""
    p = c.get("parity") or {}
    if c["status"] in ("PASS", "FAIL") and p:
        mx = [v for k, v in (p.get("max_abs") or {}).items() if v is not None and k in ("scores", "boxes")]
        det = f" {p['matched']}/{p['reference']}" if p.get("reference") is not None else ""
        return f"{c['status']}{det}" + (f" {max(mx):.1e}" if mx else "")
    return c["status"]


def tables(doc: dict) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """Per runtime: (runtime, column headers = releases oldest first, rows = [artifact, cells...], notes)."""
    results = doc["results"]
    out = []
    for rt in dict.fromkeys(c["runtime"] for c in results):
        cells = [c for c in results if c["runtime"] == rt]
        cols = sorted({(c.get("rank", 1), c["version"], c["package"]) for c in cells}, key=lambda t: (t[0], version_key(t[1])))
        arts = list(dict.fromkeys(c["artifact"] for c in cells))
        by = {(c["artifact"], c["version"], c["package"]): c for c in cells}
        rows, notes = [], []
        for a in arts:
            row = [a]
            for _, v, pkg in cols:
                c = by.get((a, v, pkg))
                if c is None:
                    row.append("—")
                    continue
                text = cell_text(c)
                if c["status"] not in ("PASS",) and c.get("message") and c["status"] != "unavailable":
                    notes.append(f"{a} in {rt} {v}: {c['message']}")
                    text += f" [{len(notes)}]"
                row.append(text)
            rows.append(row)
        unavailable = sorted({f"{c['package']}=={c['version']}: {c.get('message') or 'unavailable'}"
                              for c in cells if c["status"] == "unavailable"})
        notes += unavailable
        headers = [f"{v}" + (f" ({pkg})" if pkg.lower() != (cells[0]['package']).lower() and pkg.lower() != rt else "")
                   for _, v, pkg in cols]
        out.append((rt, headers, rows, notes))
    return out


def render_text(doc: dict) -> str:
    """The plain-text table of `zoo compat`: per runtime, artifacts x releases."""
    L = []
    for rt, headers, rows, notes in tables(doc):
        width = [max(len(r[i]) for r in [["artifact", *headers], *rows]) for i in range(len(headers) + 1)]
        L.append(f"{rt}:")
        L.append("  " + "  ".join(h.ljust(width[i]) for i, h in enumerate(["artifact", *headers])))
        for r in rows:
            L.append("  " + "  ".join(v.ljust(width[i]) for i, v in enumerate(r)))
        for i, n in enumerate(notes, 1):
            L.append(f"  [{i}] {n}")
        L.append("")
    return "\n".join(L)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_section(doc: dict | None, problem: str | None, folder_name: str, current: dict[str, str] | None = None) -> list[str]:
    """`zoo report`'s "Runtime compatibility" section; ``current``: primary -> sha256 in the manifest now
    (cells of a file that changed since are marked stale)."""
    L = ["### Runtime compatibility", ""]
    if problem:
        return L + [f"> **compat.json unusable** ({folder_name}): {_md(problem)}", ""]
    L.append(f"`zoo compat` on {_md(doc.get('python', '?'))}, {_md(doc.get('created', ''))}; evidence: "
             f"{_md(', '.join(map(str, doc.get('evidence') or [])) or '?')}. Cells: status, detections matched / "
             "reference, largest max abs difference of scores and boxes.")
    L.append("")
    stale = sorted({c["artifact"] for c in doc["results"]
                    if current is not None and c.get("sha256") and current.get(c["primary"]) not in (None, c["sha256"])})
    for rt, headers, rows, notes in tables(doc):
        L.append(f"**{_md(rt)}**")
        L.append("")
        L.append("| artifact | " + " | ".join(_md(h) for h in headers) + " |")
        L.append("|---|" + "---|" * len(headers))
        for r in rows:
            L.append("| " + " | ".join(_md(v) for v in r) + " |")
        L.append("")
        L += [f"{i}. {_md(n)}" for i, n in enumerate(notes, 1)]
        if notes:
            L.append("")
    L.append("Per artifact:")
    L.append("")
    for art, by_rt in summarize(doc["results"]).items():
        L.append(f"- {_md(art)}: " + "; ".join(_md(runs_on(rt, s)) for rt, s in by_rt.items()))
    L.append("")
    if stale:
        L.append(f"> stale: {', '.join(map(_md, stale))} changed since `zoo compat` ran: re-run it.")
        L.append("")
    return L


def card_section(doc: dict | None, problem: str | None, model: str, current: dict[str, str] | None = None) -> list[str]:
    """The model card view's compatibility section (`zoo card`): per artifact of ``model``, the oldest
    release of each tested runtime it runs on from ``compat.json``. Never part of the card in the
    release (its hashed content): a view, printed or written elsewhere."""
    L = ["## Runtime compatibility", "",
         "From `zoo compat` (compat.json beside the release, outside its hashed content); not part of the card itself.", ""]
    if problem:
        return L + [f"> **compat.json unusable**: {_md(problem)}", ""]
    if doc is None:
        return L + ["No `zoo compat` result for this release yet: run `zoo compat DIR`.", ""]
    mine = [c for c in doc["results"] if c["model"] == model]
    if not mine:
        return L + [f"`zoo compat` tested no artifact of {_md(model)}.", ""]
    L.append(f"Tested on {_md(doc.get('python', '?'))}, {_md(doc.get('created', ''))}.")
    L.append("")
    primary = {c["artifact"]: c["primary"] for c in mine}
    stale = {c["artifact"] for c in mine
             if current is not None and c.get("sha256") and current.get(c["primary"]) not in (None, c["sha256"])}
    for art, by_rt in summarize(mine).items():
        name = art[len(model) + 1:] if art.startswith(model + " ") else art
        L.append(f"- `{_md(name)}` (`{_md(primary[art])}`): " + "; ".join(_md(runs_on(rt, s)) for rt, s in by_rt.items())
                 + (" **stale: the file changed since `zoo compat` ran**" if art in stale else ""))
    L.append("")
    return L
