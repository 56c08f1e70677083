"""lint-imports on the layout the wheel installs: one root, ``zoo``, with checkpoints/, exporters/ and
validation/ inside it (pyproject.toml's package-dir). In the repository those folders sit beside zoo/,
where import-linter's graph builder would not find them under ``zoo``, so this copies the Python files
of every package-dir root into a temporary folder at their installed place and runs the contracts of
pyproject.toml there. Arguments are passed on to lint-imports.

    .venv/bin/python scripts/lint_imports.py [LINT-IMPORTS OPTIONS]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage(dest: Path) -> int:
    """Copies each package-dir root's ``*.py`` files to ``dest`` as installed; returns how many."""
    roots = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    n = 0
    for name, folder in roots.items():
        src = REPO / folder
        for f in src.rglob("*.py"):
            rel = f.relative_to(src)
            if "__pycache__" in rel.parts:
                continue
            out = dest.joinpath(*name.split("."), rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
            n += 1
    return n


def main(argv: list[str]) -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.is_file():
        print(f"error: lint-imports not found beside {sys.executable}: run scripts/install.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="zoo-lint-") as td:
        n = stage(Path(td))
        print(f"lint-imports on the installed layout ({n} modules staged under zoo/)")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run([str(lint), "--no-cache", *argv, str(REPO / "pyproject.toml")],
                              cwd=td, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
