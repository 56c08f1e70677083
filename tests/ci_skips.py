"""Under CI=true a skipped test is a failure, unless the list of allowed skips names it with its reason.

CI installs every runtime and lays out all the material, so a skip there means something is missing
that the suite believes it checks (a runtime that fails to import, strace, the registry binary): the
run fails and the report names the test and its skip reason. The few skips that are by design (a case
a test cannot build for one format, a platform the machine is not) are listed in ``tests/ci_skips.toml``
(``ZOO_CI_SKIPS`` names another file), each with a test id pattern, the skip reason's text and why it is
allowed. Skips at collection (a module's ``importorskip``) count as well. Locally (no CI=true) skips stay
skips.

conftest.py imports these hooks; ``pytest -p ci_skips`` loads them into any run.
"""
from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path

import pytest

LIST = Path(__file__).with_name("ci_skips.toml")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def allowed_skips(path: Path | None = None) -> list[dict]:
    """The allowed skips: [{"test": glob of test ids, "reason": text the skip reason contains, "why": ...}]."""
    path = Path(path or os.environ.get("ZOO_CI_SKIPS") or LIST)
    entries = tomllib.loads(path.read_text()).get("skip", [])
    for i, e in enumerate(entries):
        if not all(isinstance(e.get(k), str) and e.get(k) for k in ("test", "reason", "why")):
            raise ValueError(f"{path}: entry {i} needs 'test', 'reason' and 'why' (non-empty text)")
    return entries


def skip_reason(report) -> str:
    """The text of a skip (a skipped report's longrepr is (file, line, reason))."""
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return str(lr)


def is_allowed(nodeid: str, reason: str, entries: list[dict]) -> dict | None:
    for e in entries:
        if fnmatch.fnmatchcase(nodeid, e["test"]) and e["reason"] in reason:
            return e
    return None


def _fail(report, what: str) -> None:
    reason = skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (f"{what} {report.nodeid} was skipped under CI=true, and the skip is not on the list of "
                       f"allowed skips ({os.environ.get('ZOO_CI_SKIPS') or LIST.name}): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        if not is_allowed(report.nodeid, skip_reason(report), allowed_skips()):
            _fail(report, "test")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not is_allowed(report.nodeid, skip_reason(report), allowed_skips()):
        _fail(report, "module")
