"""JUnit XML for CI: one test case per artifact (or file) checked."""
from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from zoo.fsutil import atomic_write_bytes


def write_junit(path: Path, suite: str, cases: list[dict]) -> None:
    """cases: {"name", "passed", "failure" (message or None), optional "classname", "time"}."""
    failures = sum(1 for c in cases if not c["passed"])
    root = ET.Element("testsuites", name="ultraface-zoo", tests=str(len(cases)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", skipped="0")
    for c in cases:
        tc = ET.SubElement(ts, "testcase", name=c["name"], classname=c.get("classname", f"zoo.{suite}"), time=f"{c.get('time', 0):.3f}")
        if not c["passed"]:
            f = ET.SubElement(tc, "failure", message=(c.get("failure") or "failed")[:500])
            f.text = c.get("failure") or "failed"
    ET.indent(root)
    atomic_write_bytes(Path(path), ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


def artifact_cases(manifest: dict) -> list[dict]:
    """Cases from an export/release manifest: artifacts (parity) and failures."""
    cases = []
    for a in manifest.get("artifacts", []):
        p = a.get("parity") or {}
        name = f"{a.get('model', manifest.get('model', {}).get('id', ''))} {a['target']}/{a['precision']}/{a['head']}"
        cases.append({"name": name, "passed": bool(p.get("passed")), "failure": "; ".join(p.get("failures", [])) or None})
    for f in manifest.get("failed", []):
        name = f"{f.get('model', manifest.get('model', {}).get('id', ''))} {f['target']}/{f['precision']}/{f['head']}"
        cases.append({"name": name, "passed": False, "failure": f["error"]})
    return cases
