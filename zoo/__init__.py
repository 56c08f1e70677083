"""ultraface-zoo: the UltraFace face detectors, exported to every edge runtime and proven.

One installed root: ``zoo`` holds the core (``zoo.core``), the published checkpoints
(``zoo.checkpoints``), the export targets (``zoo.exporters``), the verification (``zoo.validation``),
the pipeline (``zoo.pipeline``) and the CLI (``zoo.cli``). In the repository, ``checkpoints/``,
``exporters/`` and ``validation/`` stay beside ``zoo/`` (pyproject.toml's ``package-dir`` installs them
inside it); in a source checkout the finder below maps them to the same names, so the checkout runs as
the wheel does. ``import zoo`` stays light: the standard library only, nothing from a layer above the
core.

The typed Python API (``zoo.export``, ``zoo.check``, ``zoo.verify``, ``zoo.release``, ``zoo.bench``,
``zoo.load``, ...) lives in ``zoo.api`` and is imported on first use of one of its names.
"""
import os as _os
import sys as _sys
from importlib.util import spec_from_file_location as _spec_from_file_location

from zoo.core.version import __version__

#: the sub-packages whose folders sit beside zoo/ in the repository (pyproject.toml's package-dir;
#: tests/unit/test_layout.py keeps the two equal)
_PORTIONS = ("checkpoints", "exporters", "validation")


class _SourceTreeFinder:
    """Finds ``zoo.<portion>`` in the repository folder beside ``zoo/`` (a source checkout, an editable
    install, a `zoo compat` environment's link to it). Not installed where ``zoo/`` holds them (the wheel)."""

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head != "zoo" or name not in _PORTIONS:
            return None
        folder = _os.path.join(self.root, name)
        init = _os.path.join(folder, "__init__.py")
        if not _os.path.isfile(init):
            return None
        return _spec_from_file_location(fullname, init, submodule_search_locations=[folder])


def _install_source_finder() -> None:
    here = _os.path.dirname(_os.path.realpath(__file__))
    if any(_os.path.isdir(_os.path.join(here, p)) for p in _PORTIONS):
        return  # installed layout: the portions are inside zoo/
    root = _os.path.dirname(here)
    if not any(isinstance(f, _SourceTreeFinder) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _SourceTreeFinder(root))


_install_source_finder()


#: the names ``zoo.api`` exports, reachable as ``zoo.NAME`` (imported on first use: ``import zoo`` stays light)
_API = ("Artifact", "BenchResult", "CheckItem", "CheckResult", "CompatResult", "Detection", "Detections", "Detector",
        "DiffResult", "Evidence", "ExportResult", "Failure", "Parity", "ReleaseResult", "VerifyCase", "VerifyResult",
        "ZooError", "bench", "check", "compat", "diff", "export", "load", "release", "runtimes", "targets", "verify")


def __getattr__(name: str):
    if name in _API:
        __import__("zoo.api")  # on first use only: `import zoo` stays light
        value = getattr(_sys.modules["zoo.api"], name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
