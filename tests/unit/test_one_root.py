"""One installed root: the wheel installs only `zoo` (checkpoints/, exporters/ and validation/ inside it, as
pyproject.toml's package-dir says), a source checkout imports the same names (zoo/__init__.py), `import zoo`
stays light, and every string that names one of our modules (the registry, worker and preload modules,
`python -m ...`) names one that exists under the one root."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import zoo
from zoo.exporters import _MODULES, get_target, target_names

ROOT = Path(__file__).resolve().parents[2]
MAPPING = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def test_the_package_dir_mapping_is_the_source_finders():
    assert MAPPING == {"zoo": "zoo", **{f"zoo.{p}": p for p in zoo._PORTIONS}}
    for name, folder in MAPPING.items():
        assert (ROOT / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("how", ["pythonpath", "installed"])
def test_import_zoo_imports_nothing_heavy(how, tmp_path):
    """Neither torch nor numpy, nor any layer above the core; from a source tree and from the installed layout."""
    if how == "installed":
        for name, folder in MAPPING.items():
            shutil.copytree(ROOT / folder, tmp_path.joinpath(*name.split(".")), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        path = tmp_path
    else:
        path = ROOT
    code = ("import sys, zoo; print(zoo.__file__); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'cv2', 'typer') "
            "or (m.startswith('zoo.') and not m.startswith('zoo.core'))))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                        env=_clean_env(PYTHONPATH=str(path)), cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    where, loaded = cp.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(path.resolve()), where
    assert loaded == "[]", loaded


def test_a_second_checkout_on_pythonpath_imports_its_own_portions(tmp_path):
    """What scripts/fresh_machine.sh does: a clone on PYTHONPATH, run by an interpreter whose site-packages
    hold an editable install of another checkout. Every portion must come from the clone."""
    clone = tmp_path / "clone"
    for folder in MAPPING.values():
        shutil.copytree(ROOT / folder, clone / folder, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import zoo.exporters, zoo.checkpoints.loader, zoo.validation.parity, zoo.core.meta, zoo.exporters.onnx.runner; "
            "print('\\n'.join(m.__file__ for m in (zoo, zoo.exporters, zoo.checkpoints.loader, zoo.validation.parity, "
            "zoo.core.meta, zoo.exporters.onnx.runner)))")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                        env=_clean_env(PYTHONPATH=str(clone)), cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr[-2000:]
    for f in cp.stdout.split():
        assert Path(f).resolve().is_relative_to(clone.resolve()), f"{f} is not from the clone"


def _our_modules() -> set[str]:
    out = set()
    for name, folder in MAPPING.items():
        for p in (ROOT / folder).rglob("*.py"):
            rel = p.relative_to(ROOT / folder).with_suffix("")
            parts = [*name.split("."), *rel.parts]
            out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _string_constants():
    for folder in {*MAPPING.values(), "tests", "scripts", "benchmarks"}:
        for p in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    yield p.relative_to(ROOT), node.value


#: dotted strings that are not module names: the ONNX metadata key of our artifact metadata
NOT_MODULES = {"zoo.meta"}
_DOTTED = re.compile(r"^(zoo(?:\.[A-Za-z_]\w*)+)(?::(\w+))?$")
_OLD = re.compile(r"(?<![\w./-])(?:exporters|checkpoints|validation)\.[a-z_]+\w*(?:\.\w+)*")


def test_every_module_string_names_a_module_under_the_one_root():
    """Registry entries, worker modules (`run_isolated`, `python -m ...`), preload lists, mock targets:
    a dotted string starting with zoo. names one of our modules (or a module's attribute)."""
    import zoo as zoo_root  # noqa: the root package's lazily re-exported API names

    mods, bad, seen = _our_modules(), [], 0
    for where, text in _string_constants():
        for s in re.findall(r"(?:^|(?<=\s)|(?<=-m ))zoo(?:\.[A-Za-z_]\w*)+(?::\w+)?", text):
            m = _DOTTED.match(s)
            if not m or s in NOT_MODULES:
                continue
            seen += 1
            parts = m.group(1).split(".")
            if parts[1] in zoo_root._API:  # the API's names, re-exported lazily by zoo/__init__.py (zoo.export, ...)
                continue
            if not any(".".join(parts[:n]) in mods for n in range(len(parts), 1, -1)):
                bad.append(f"{where}: {s}")
    assert seen > 20
    assert not bad, bad


def test_no_string_or_script_names_the_old_top_level_packages():
    bad = [f"{where}: {text[:80]!r}" for where, text in _string_constants() if _OLD.search(text)]
    for p in [*(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run", ROOT / ".github" / "workflows" / "ci.yml",
              ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "mkdocs.yml", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if _OLD.search(line) or re.search(r"-m (exporters|checkpoints|validation)\b", line):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


def test_the_registry_and_worker_strings_resolve():
    for name in target_names():
        t = get_target(name)
        assert type(t).__module__.startswith("zoo.exporters."), (name, type(t).__module__)
        for m in getattr(t, "preload", None) or ():
            assert __import__("importlib").util.find_spec(m) is not None, m
    assert all(v.startswith("zoo.exporters.") for v in _MODULES.values())
    from zoo.validation.bench.spawn import WORKER

    assert __import__("importlib").util.find_spec(WORKER) is not None


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """Built from the tracked files (as a clone holds them), offline, with the locked setuptools."""
    pytest.importorskip("build", reason="the test extra's `build` is not installed (scripts/install.sh)")
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, (x.decode() for x in files)):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    cp = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                         str(src)], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"zoo"}, tops
    for m in _our_modules():
        path = m.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"{m} is not in the wheel"
    for data in ("zoo/checkpoints/manifest.toml", "zoo/exporters/caffe/caffe.proto", "zoo/core/data/constraints.txt",
                 "zoo/core/data/compat_matrix.toml", "zoo/core/data/test_material.toml",
                 "zoo/core/data/images/grace_hopper.jpg", "zoo/core/data/calibration/mosaic2x2.jpg"):
        assert data in names, data
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode()
    assert meta.split() == ["zoo"], meta
