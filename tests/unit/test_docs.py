"""The docs build is strict: a copy of docs/ and mkdocs.yml builds clean, and the same copy with one broken
relative link, or with one page left out of the nav, fails `mkdocs build --strict` (what .ci/run runs),
naming what is wrong. The API page is generated from zoo/api.py's docstrings."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("mkdocs", reason="mkdocs (the `docs` extra) is not installed: run scripts/install.sh")


def _copy(tmp_path):
    """docs/ and mkdocs.yml in tmp_path; mkdocstrings still reads zoo/api.py from the repository."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    cfg = (ROOT / "mkdocs.yml").read_text()
    assert "paths: [.]" in cfg
    (tmp_path / "mkdocs.yml").write_text(cfg.replace("paths: [.]", f"paths: [{ROOT}]"))
    return tmp_path


def _build(root):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(root / "site")], capture_output=True, text=True, timeout=300, cwd=root)


def test_the_docs_build_strict_and_a_broken_link_fails_it(tmp_path):
    root = _copy(tmp_path)
    cp = _build(root)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    api = (root / "site" / "api" / "index.html").read_text()
    assert 'id="zoo.api.load"' in api and "ExportResult" in api  # generated from the docstrings

    page = root / "docs" / "parity.md"
    page.write_text(page.read_text() + "\nSee [the targets](targetz.md).\n")
    cp = _build(root)
    assert cp.returncode != 0, "a broken relative link passed the strict docs build"
    assert "targetz.md" in cp.stdout + cp.stderr


def test_a_page_missing_from_the_nav_fails_the_strict_build(tmp_path):
    root = _copy(tmp_path)
    (root / "docs" / "orphan.md").write_text("# Orphan\n\n    zoo list\n")
    cp = _build(root)
    assert cp.returncode != 0, "a page left out of the nav passed the strict docs build"
    assert "orphan.md" in cp.stdout + cp.stderr


def test_every_page_starts_with_its_commands():
    for p in sorted((ROOT / "docs").glob("*.md")):
        lines = [l for l in p.read_text().splitlines() if l.strip()]
        assert lines[0].startswith("# "), p.name
        assert lines[1].startswith("    ") or lines[1].startswith("```"), f"{p.name} does not start with its commands"


def test_the_readme_stays_short_and_keeps_the_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run's last line is the README's test command (after its own install): the two must not drift apart
    test_cmd = ci.strip().splitlines()[-1]
    assert test_cmd.startswith('bash scripts/fetch_shared.sh "$ZOO_SHARED" && ')
    tail = test_cmd.split(" && ", 1)[1]
    assert f'    bash scripts/install.sh && bash scripts/fetch_shared.sh "${{ZOO_SHARED:-../shared}}" && {tail}\n' in readme
    assert "    bash scripts/install.sh && .venv/bin/zoo export --model rfb-320 " in readme


def test_the_readme_links_point_at_pages_that_exist():
    import re

    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert len(links) > 20
    missing = sorted({l for l in links if not (ROOT / l).is_file()})
    assert not missing, f"README.md links to missing files: {missing}"
