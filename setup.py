"""The package list, derived: every folder under each root of pyproject.toml's ``[tool.setuptools]
package-dir`` (packages, and the data folders of package-data), named under its root
(``exporters/onnx`` -> ``zoo.exporters.onnx``), so a new target package needs no edit. Everything else
about the build is declared in pyproject.toml."""
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

_here = Path(__file__).resolve().parent
_roots = tomllib.loads((_here / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
setup(packages=[f"{name}.{sub}" if sub else name
                for name, folder in _roots.items() for sub in ["", *find_namespace_packages(str(_here / folder), exclude=["*__pycache__*"])]])
