"""Under CI=true a skip fails unless tests/ci_skips.toml allows it (tests/ci_skips.py), at run time and at
collection, and a runtime that fails to import fails the run naming it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ci_skips
from conftest import ROOT

TESTS = ROOT / "tests"


def _pytest(args, cwd: Path, ci: bool, extra_env: dict | None = None, pythonpath: list[Path] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ZOO_CI_SKIPS", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in [*pythonpath, TESTS, ROOT])
    if ci:
        env["CI"] = "true"
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path):
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs():\n    pass\n"
        "def test_missing_runtime():\n    pytest.skip('frob runtime not installed: frob')\n"
        "@pytest.mark.skipif(True, reason='only on a platform CI is not')\n"
        "def test_by_design():\n    pass\n")
    (tmp_path / "allowed.toml").write_text(
        '[[skip]]\ntest = "test_some.py::test_by_design"\nreason = "only on a platform"\nwhy = "not that platform"\n')
    return tmp_path


def test_locally_a_skip_is_a_skip(suite):
    cp = _pytest(["-p", "ci_skips", "test_some.py"], suite, ci=False, extra_env={"ZOO_CI_SKIPS": str(suite / "allowed.toml")})
    assert cp.returncode == 0 and "1 passed, 2 skipped" in cp.stdout, cp.stdout


def test_under_ci_an_unlisted_skip_fails_naming_it(suite):
    cp = _pytest(["-p", "ci_skips", "test_some.py"], suite, ci=True, extra_env={"ZOO_CI_SKIPS": str(suite / "allowed.toml")})
    assert cp.returncode == 1, cp.stdout
    assert "1 failed, 1 passed, 1 skipped" in cp.stdout, cp.stdout
    assert "test_some.py::test_missing_runtime was skipped under CI=true" in cp.stdout
    assert "frob runtime not installed: frob" in cp.stdout


def test_under_ci_a_module_skip_fails_at_collection(tmp_path):
    (tmp_path / "test_mod.py").write_text("import pytest\nfrob = pytest.importorskip('frob_not_there_xyz')\n"
                                          "def test_x():\n    pass\n")
    (tmp_path / "none.toml").write_text("")
    env = {"ZOO_CI_SKIPS": str(tmp_path / "none.toml")}
    assert _pytest(["-p", "ci_skips", "test_mod.py"], tmp_path, ci=False, extra_env=env).returncode == 5  # all skipped
    cp = _pytest(["-p", "ci_skips", "test_mod.py"], tmp_path, ci=True, extra_env=env)
    assert cp.returncode != 0 and "frob_not_there_xyz" in cp.stdout and "skipped under CI=true" in cp.stdout, cp.stdout


def test_a_runtime_that_fails_to_import_fails_a_ci_run_naming_it(tmp_path):
    """MNN made unimportable (a package of that name that raises first on the path): the MNN tests'
    module is skipped locally, and under CI=true the run fails and says MNN is not installed."""
    blocker = tmp_path / "block" / "MNN"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError('No module named MNN (removed for this test)', name='MNN')\n")
    args = ["--collect-only", "tests/targets/test_mnn_tools.py"]
    local = _pytest(args, ROOT, ci=False, pythonpath=[blocker.parent])
    assert local.returncode == 5 and "SKIPPED [1] tests/targets/test_mnn_tools.py" in local.stdout, local.stdout[-2000:]
    cp = _pytest(args, ROOT, ci=True, pythonpath=[blocker.parent])
    assert cp.returncode != 0, cp.stdout[-2000:]
    assert "tests/targets/test_mnn_tools.py was skipped under CI=true" in cp.stdout and "MNN is not installed" in cp.stdout, cp.stdout[-2000:]


def test_the_list_is_well_formed_and_each_entry_says_why():
    entries = ci_skips.allowed_skips()
    assert entries, "an empty list is fine, but then delete the file's entries on purpose"
    for e in entries:
        assert (TESTS.parent / e["test"].split("::")[0]).is_file(), e["test"]
        assert len(e["why"]) > 20
