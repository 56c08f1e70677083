"""benchmarks/mutation_survivors.toml (issue 40): every judged survivor names a function that exists, a line that is
still in its module's source, a verdict the mutation run knows and why. A survivor whose line was edited away is
no longer judged by anything: this test says which, instead of the next weekly run."""
from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

SURVIVORS = Path(__file__).resolve().parents[2] / "benchmarks" / "mutation_survivors.toml"


def _module_of(function: str):
    """zoo.validation.parity.compare -> the module; zoo.exporters.base.x.ExportRequest.quant_scorer too."""
    parts = function.split(".")
    for n in range(len(parts) - 1, 0, -1):
        try:
            return importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
    raise AssertionError(f"no module for {function}")


def test_every_judged_survivor_names_a_line_of_its_module():
    entries = tomllib.loads(SURVIVORS.read_text())["survivor"]
    assert entries
    problems = []
    for e in entries:
        if e.get("verdict") not in ("equivalent", "accepted") or not str(e.get("why", "")).strip():
            problems.append(f"{e.get('function')}: verdict {e.get('verdict')!r}, why {e.get('why')!r}")
            continue
        source = Path(_module_of(e["function"]).__file__).read_text()
        lines = {line.strip() for line in source.splitlines()}
        name = e["function"].rsplit(".", 1)[1]
        if f"def {name}(" not in source:
            problems.append(f"{e['function']}: no such function")
        if e["was"] not in lines:
            problems.append(f"{e['function']}: the line {e['was']!r} is not in its module any more")
        if e["was"] == e["now"]:
            problems.append(f"{e['function']}: was == now")
    assert not problems, "\n".join(problems)
