"""JUnit XML for CI: one test case per artifact (or file) checked."""
from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from zoo.core.fsutil import atomic_write_bytes
from zoo.core.manifest import Manifest


def write_junit(path: Path, suite: str, cases: list[dict]) -> None:
    """cases: {"name", "passed", "failure" (message or None), optional "classname", "time", "skipped"}."""
    failures = sum(1 for c in cases if not c["passed"])
    skipped = sum(1 for c in cases if c.get("skipped"))
    root = ET.Element("testsuites", name="ultraface-zoo", tests=str(len(cases)), failures=str(failures))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", skipped=str(skipped))
    for c in cases:
        tc = ET.SubElement(ts, "testcase", name=c["name"], classname=c.get("classname", f"zoo.{suite}"), time=f"{c.get('time', 0):.3f}")
        if c.get("skipped"):
            ET.SubElement(tc, "skipped", message=(c.get("failure") or "skipped")[:500])
        elif not c["passed"]:
            f = ET.SubElement(tc, "failure", message=(c.get("failure") or "failed")[:500])
            f.text = c.get("failure") or "failed"
    ET.indent(root)
    atomic_write_bytes(Path(path), ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")


def artifact_cases(manifest: Manifest) -> list[dict]:
    """Cases from an export/release manifest: artifacts (parity) and failures."""
    cases = []
    for a in manifest.artifacts:
        p = a.parity or {}
        cases.append({"name": str(a.key), "passed": a.passed, "failure": "; ".join(p.get("failures", [])) or None})
    for f in manifest.failed:
        cases.append({"name": str(f.key), "passed": False, "failure": f.error})
    return cases
