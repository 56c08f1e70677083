"""compat.json: what `zoo compat` found, beside a release's manifest (never inside its hashes), read back
checked for `zoo report`. Whatever the file holds, reading it gives the document or one problem line.

A document: ``{"schema": SCHEMA, "python": ..., "results": [cell, ...], ...}``; a cell is one artifact in
one runtime release: ``artifact, model, target, precision, head, primary, sha256, runtime, package,
version, rank, status, message, parity`` with ``status`` one of STATUSES. A cell run on another platform
(`zoo compat --platform linux/arm64`) also has ``platform``, ``cpu`` and ``options`` (the runtime options
an app sets), which are part of its identity (`cell_key`), and ``tier`` (of the arithmetic that ran),
``x86`` (the same file run natively with the same options: its verdict and the largest differences from
it), ``settings``, ``emulation``, ``userland`` and, where the options gave another arithmetic than the
file's or failed, ``alternative`` ``{options, status, parity, ...}`` with the options that restore it.
Absent ``platform`` means this machine, as in files written before platforms existed.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from zoo.core.platforms import native_label

COMPAT_FILE = "compat.json"
SCHEMA = "ultraface-zoo/compat/1"
#: PASS / FAIL: loaded and ran, parity verdict; cannot-load: the runtime refused the artifact (its message);
#: unavailable: no such release for this Python/platform; error: the environment itself failed
STATUSES = ("PASS", "FAIL", "cannot-load", "unavailable", "error")
MAX_BYTES = 16 << 20
_TEXT_KEYS = ("artifact", "model", "target", "precision", "head", "primary", "runtime", "package", "version")


def version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v))


def _parity_problem(p, where: str) -> str | None:
    if p is None:
        return None
    if not isinstance(p, dict):
        return f"{where} must be an object or null"
    for k in ("matched", "reference", "extra"):
        v = p.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            return f"{where}.{k} must be a count"
    return _figures_problem(p.get("max_abs", {}), f"{where}.max_abs")


def _figures_problem(mx, where: str) -> str | None:
    if not isinstance(mx, dict) or not all(
        isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)))
        for k, v in mx.items()
    ):
        return f"{where} must map output names to finite numbers"
    return None


def _options_problem(o, where: str) -> str | None:
    if not isinstance(o, dict) or len(o) > 30 or not all(
            isinstance(k, str) and 0 < len(k) <= 60 and (isinstance(v, (bool, int)) or (isinstance(v, str) and len(v) <= 60)
                                                         or (isinstance(v, float) and math.isfinite(v)))
            for k, v in o.items()):
        return f"{where} must map option names to short values"
    return None


def _text_map_problem(d, where: str) -> str | None:
    """settings, emulation, userland: objects shown as text; their text values must be short."""
    if d is None:
        return None
    if not isinstance(d, dict):
        return f"{where} must be an object"
    for k, v in d.items():
        if isinstance(v, str) and len(v) > 2000:
            return f"{where}.{str(k)[:20]} is too long"
    return None


def _run_problem(x, where: str) -> str | None:
    """``x86`` and ``alternative``: a status, a message, parity figures, differences."""
    if not isinstance(x, dict):
        return f"{where} must be an object"
    if x.get("status") not in STATUSES:
        return f"{where}.status must be one of {', '.join(STATUSES)}"
    if x.get("message") is not None and not isinstance(x["message"], str):
        return f"{where}.message must be text or null"
    for k, check in (("parity", _parity_problem), ("max_abs", _figures_problem), ("x86", _run_problem),
                     ("options", _options_problem), ("settings", _text_map_problem)):
        if k in x and (k != "parity" or x[k] is not None):
            problem = check(x[k], f"{where}.{k}")
            if problem:
                return problem
    if x.get("tier") is not None and x["tier"] not in TIER_NAMES:
        return f"{where}.tier must be one of {', '.join(TIER_NAMES)}"
    return None


TIER_NAMES = ("fp32", "fp16", "int8")
_PLATFORM = re.compile(r"^[a-z0-9]{1,20}/[a-z0-9_]{1,20}$")


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
    problem = _parity_problem(c.get("parity"), f"results[{i}].parity")
    if problem:
        return problem
    if "platform" in c or "cpu" in c:
        if not isinstance(c.get("platform"), str) or not _PLATFORM.match(c["platform"]):
            return f"results[{i}].platform must be a platform such as linux/arm64"
        if not isinstance(c.get("cpu"), str) or not re.match(r"^[A-Za-z0-9._-]{1,40}$", c["cpu"]):
            return f"results[{i}].cpu must be a CPU model name"
        problem = _options_problem(c.get("options", {}), f"results[{i}].options")
        if problem:
            return problem
    elif "options" in c:
        return f"results[{i}].options without a platform"
    if c.get("tier") is not None and c["tier"] not in TIER_NAMES:
        return f"results[{i}].tier must be one of {', '.join(TIER_NAMES)}"
    if c.get("tier_note") is not None and (not isinstance(c["tier_note"], str) or len(c["tier_note"]) > 300):
        return f"results[{i}].tier_note must be short text"
    for k in ("x86", "alternative"):
        if k in c:
            problem = _run_problem(c[k], f"results[{i}].{k}")
            if problem:
                return problem
    for k in ("settings", "emulation", "userland"):
        problem = _text_map_problem(c.get(k), f"results[{i}].{k}")
        if problem:
            return problem
    return None


def options_label(options: dict | None) -> str:
    """A runtime option set for people: ``defaults`` (the runtime as an app gets it, no option set),
    ``library defaults`` (ncnn), ``precision=low``, ``library defaults, use_fp16_arithmetic=false``."""
    if not options:
        return "defaults"
    parts = ["library defaults"] if options.get("defaults") is True else []
    for k, v in sorted(options.items()):
        if k != "defaults":
            parts.append(f"{k}={str(v).lower() if isinstance(v, bool) else v}")
    return ", ".join(parts)


def cell_key(c: dict) -> tuple:
    """What identifies a cell in compat.json (a run replaces the cell of the same key): the file, the
    runtime release, and for another platform the platform, the CPU model and the options."""
    plat = c.get("platform") or ""
    opts = json.dumps(c.get("options") or {}, sort_keys=True) if plat else ""
    return (c["primary"], c["runtime"], c["package"], c["version"], plat, c.get("cpu") or "", opts)


def case_name(c: dict) -> str:
    """A JUnit case name: ``ARTIFACT @ RUNTIME==VERSION`` and, on another platform, ``[PLATFORM CPU OPTIONS]``."""
    name = f"{c['artifact']} @ {c['runtime']}=={c['version']}"
    if c.get("platform"):
        name += f" [{c['platform']} {c.get('cpu')} {options_label(c.get('options'))}]"
    return name


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
        if c.get("platform"):  # another platform's cells: platform_summary
            continue
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
    results = [c for c in doc["results"] if not c.get("platform")]  # this machine's: artifacts x releases
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


# ---------------------------------------------------------------------------------------------- other platforms
def _fmt(v) -> str:
    return "—" if v is None else f"{v:.1e}"


def _verdict(c: dict) -> str:
    """``PASS``, or ``PASS (fp16 tier)`` where the cell was judged by a looser tier than its file's."""
    st = c.get("status", "?")
    tier = c.get("tier")
    if st in ("PASS", "FAIL") and tier and tier != c.get("precision", "").split("-", 1)[0]:
        return f"{st} ({tier} tier)"
    return st


def _counts(c: dict) -> str:
    p = c.get("parity") or {}
    if p.get("reference") is None:
        return "—"
    weak = "" if (p.get("evidence") or {}).get("strong", True) else " weak"
    return f"{p.get('matched')}/{p.get('reference')}/{p.get('extra')}{weak}"


def _scores(d: dict | None) -> float | None:
    return ((d or {}).get("max_abs") or {}).get("scores")


def _x86(c: dict) -> str:
    x = c.get("x86") or {}
    if "max_abs" in x:
        return _fmt(_scores(x))
    return x.get("status", "—")


def platform_rows(doc: dict) -> dict[str, list[list[str]]]:
    """Per platform: rows [artifact, release, cpu, options, verdict, kept/reference/extra, scores vs PyTorch,
    scores vs x86, seconds], an alternative as its own row under its cell (options prefixed "alt: ")."""
    out: dict[str, list[list[str]]] = {}
    for c in doc["results"]:
        if not c.get("platform"):
            continue
        rows = out.setdefault(c["platform"], [])
        rows.append([c["artifact"], f"{c['runtime']}=={c['version']}", str(c.get("cpu")), options_label(c.get("options")),
                     _verdict(c), _counts(c), _fmt(_scores(c.get("parity"))), _x86(c), f"{c.get('seconds', 0):.1f}"])
        alt = c.get("alternative")
        if isinstance(alt, dict):
            a = {**alt, "precision": c.get("precision", "")}
            change = _changed(c.get("options") or {}, alt.get("options") or {})
            rows.append(["", "", "", "alt: " + (options_label(change) if change else options_label(alt.get("options"))),
                         _verdict(a), _counts(a),
                         _fmt(_scores(alt.get("parity"))), _x86(a), f"{alt.get('seconds', 0):.1f}"])
    return out


PLATFORM_HEADERS = ["artifact", "release", "cpu", "options", "verdict", "kept/ref/extra", "scores vs PyTorch",
                    "scores vs x86", "s"]


def _cpu_title(cpu: str) -> str:
    return re.sub(r"^armv", "ARMv", cpu)


def platform_summary(results: list[dict]) -> dict:
    """Per artifact and platform: each (options, CPU) cell's verdict and tier, the native verdict of the
    same options, the alternative's, and one line for reports (`platform_line`)."""
    out: dict = {}
    for c in results:
        if not c.get("platform"):
            continue
        out.setdefault(c["artifact"], {}).setdefault(c["platform"], []).append(c)
    summary = {}
    for art, by_plat in out.items():
        summary[art] = {}
        for plat, cells in by_plat.items():
            summary[art][plat] = {
                "cells": [{"cpu": c.get("cpu"), "options": c.get("options") or {}, "release": f"{c['runtime']}=={c['version']}",
                           "status": c["status"], "tier": c.get("tier"), "tier_note": c.get("tier_note"),
                           "x86": (c.get("x86") or {}).get("status"),
                           **({"alternative": {"options": c["alternative"].get("options") or {},
                                               "status": c["alternative"].get("status"), "tier": c["alternative"].get("tier")}}
                              if isinstance(c.get("alternative"), dict) else {})} for c in cells],
                "line": platform_line(cells)}
    return summary


def platform_line(cells: list[dict]) -> str:
    """``x86-64 PASS; linux/arm64 armv8.0 PASS, armv8.2 PASS (fp16 tier: ncnn fp16 storage and arithmetic on)``
    for one artifact's cells of one platform; one part per option set (and per runtime, where several run
    the file)."""
    if not cells:
        return ""
    native = native_label()
    releases = list(dict.fromkeys(f"{c['runtime']}=={c['version']}" for c in cells))
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    by_release: dict[str, list[str]] = {}
    for c in cells:
        st = (c.get("x86") or {}).get("status")
        if st:
            by_release.setdefault(c["runtime"] if len(releases) == len(runtimes) else f"{c['runtime']}=={c['version']}",
                                  []).append(st)
    statuses = {k: list(dict.fromkeys(v)) for k, v in by_release.items()}
    if not statuses:
        head = f"{native} not run"
    elif len(statuses) == 1 or len({tuple(v) for v in statuses.values()}) == 1:
        head = f"{native} {', '.join(next(iter(statuses.values())))}"
    else:
        head = f"{native} " + ", ".join(f"{k} {'/'.join(v)}" for k, v in statuses.items())
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((f"{c['runtime']}=={c['version']}", options_label(c.get("options"))), []).append(c)
    parts = []
    for (release, label), group in groups.items():
        who = (release if len(releases) > len(runtimes) else group[0]["runtime"]) if len(releases) > 1 else ""
        what = ", ".join(x for x in (who, "" if label == "defaults" else label) if x)
        items, notes = [], []
        for c in group:
            items.append(f"{c.get('cpu')} {c['status']}")
            if c.get("tier_note") and c["status"] in ("PASS", "FAIL"):
                own = c.get("precision", "").split("-", 1)[0]
                note = f"{c['tier']} tier: {c['tier_note']}" if c.get("tier") and c["tier"] != own else c["tier_note"]
            elif c["status"] not in ("PASS", "FAIL") and c.get("message"):
                note = str(c["message"])[:120]
            else:
                continue
            if note not in notes:
                notes.append(note)
        parts.append(f"{group[0]['platform']}{f' ({what})' if what else ''} {', '.join(items)}"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    return "; ".join([head] + parts)


def _changed(base: dict, alt: dict) -> dict:
    return {k: v for k, v in alt.items() if base.get(k) != v}


def advice(cells: list[dict]) -> list[str]:
    """What an app developer should set, from the cells whose options gave another arithmetic than the
    file's (or failed) and whose alternative passed: ``on ARMv8.2, run this ncnn file with
    use_fp16_arithmetic = false to get the proven fp32 result``."""
    out = []
    for c in cells:
        alt = c.get("alternative")
        if not isinstance(alt, dict) or alt.get("status") != "PASS":
            continue
        change = _changed(c.get("options") or {}, alt.get("options") or {})
        if not change:
            continue
        setting = ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in change.items())
        base = c.get("precision", "").split("-", 1)[0]
        line = (f"on {_cpu_title(str(c.get('cpu')))} ({c['platform']}), run this {c['runtime']} file with {setting} "
                f"to get the proven {base} result")
        what = [c["tier_note"].split(" ", 1)[-1]] if c.get("tier_note") else []
        x = _scores(c.get("x86"))
        if x is not None:
            what.append(f"scores {x:.1e} from x86")
        detail = f" ({', '.join(what)})" if what else ""
        if c["status"] == "PASS":
            if c.get("tier_note"):
                line += f"; with {options_label(c.get('options'))} it runs with {what[0]}"
                line += f" ({', '.join(what[1:])})" if len(what) > 1 else ""
        else:
            line += f"; with {options_label(c.get('options'))} it is {c['status']}{detail}"
        if line not in out:
            out.append(line)
    return out


def _platform_text(doc: dict) -> list[str]:
    L = []
    for plat, rows in platform_rows(doc).items():
        envs = [e for e in (doc.get("environments") or {}).values() if isinstance(e, dict) and e.get("platform") == plat]
        qemu = next((e.get("qemu") for e in envs if e.get("qemu")), None)
        L.append(f"{plat} (emulated{', qemu ' + str(qemu) if qemu else ''}):")
        table = [PLATFORM_HEADERS, *rows]
        width = [max(len(r[i]) for r in table) for i in range(len(PLATFORM_HEADERS))]
        for r in table:
            L.append("  " + "  ".join(v.ljust(width[i]) for i, v in enumerate(r)).rstrip())
        notes = sorted({f"{c['artifact']} {c.get('cpu')} {options_label(c.get('options'))}: {c['message']}"
                        for c in doc["results"] if c.get("platform") == plat and c["status"] != "PASS" and c.get("message")})
        L += [f"  - {n}" for n in notes]
        L.append("")
    for art, by_plat in platform_summary(doc["results"]).items():
        for plat, s in by_plat.items():
            L.append(f"{art}: {s['line']}")
    if L:
        L.append("")
    return L


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
    L += _platform_text(doc)
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
    native = summarize(doc["results"])
    if native:
        L.append("Per artifact:")
        L.append("")
        for art, by_rt in native.items():
            L.append(f"- {_md(art)}: " + "; ".join(_md(runs_on(rt, s)) for rt, s in by_rt.items()))
        L.append("")
    L += _platform_markdown(doc)
    if stale:
        L.append(f"> stale: {', '.join(map(_md, stale))} changed since `zoo compat` ran: re-run it.")
        L.append("")
    return L


def _platform_markdown(doc: dict) -> list[str]:
    """`zoo report`'s platform part: per platform a table of every (artifact, CPU, options) cell, then one
    line per artifact (`platform_line`) and what to set where the runtime's defaults change the arithmetic."""
    L = []
    for plat, rows in platform_rows(doc).items():
        L.append(f"**{_md(plat)}** (emulated: each runtime's aarch64 build; kept/ref/extra: detections matched / "
                 "reference / extra; scores: largest max abs difference)")
        L.append("")
        L.append("| " + " | ".join(PLATFORM_HEADERS) + " |")
        L.append("|" + "---|" * len(PLATFORM_HEADERS))
        for r in rows:
            L.append("| " + " | ".join(_md(v) for v in r) + " |")
        L.append("")
    summ = platform_summary(doc["results"])
    if summ:
        L.append("Per artifact, by platform:")
        L.append("")
        for art, by_plat in summ.items():
            for plat, s in by_plat.items():
                L.append(f"- {_md(art)}: {_md(s['line'])}")
        L.append("")
        tips = [f"{art}: {t}" for art in summ
                for t in advice([c for c in doc["results"] if c.get("platform") and c["artifact"] == art])]
        if tips:
            L += ["What to set:", ""] + [f"- {_md(t)}" for t in tips] + [""]
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
    plats = platform_summary(mine)
    if plats:
        L += ["### Platforms", "",
              "Each file run by its runtime's build for the platform (emulated), with the options an app gets.", ""]
        for art, by_plat in plats.items():
            name = art[len(model) + 1:] if art.startswith(model + " ") else art
            for plat, s in by_plat.items():
                L.append(f"- `{_md(name)}` (`{_md(primary[art])}`): {_md(s['line'])}"
                         + (" **stale: the file changed since `zoo compat` ran**" if art in stale else ""))
                cells = [c for c in mine if c["artifact"] == art and c.get("platform") == plat]
                L += [f"  - {_md(t)}" for t in advice(cells)]
        L.append("")
    return L
