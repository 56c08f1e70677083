"""The mutation run of the verification code: mutmut mutates it one change at a time and runs, for each
mutant, the tests of the fast tiers (tests/unit and `-m smoke`) that call the changed function.

    .venv/bin/python scripts/mutation.py [--modules zoo/validation/parity.py,...] [--jobs N] [--fresh]
                                         [--report FILE] [--no-gate]

The modules are pyproject.toml's ``[tool.mutmut] only_mutate`` (the parity engine and the tiers, the golden
kit and verify, pre-processing and image loading, manifest integrity, the calibration scorer); of
exporters/base.py and model/layers.py only the scorer's functions count (``SCOPE``). mutmut names
a function by its file's path, so the run happens in a staged copy laid out as the wheel installs
(``zoo/validation``, ``zoo/exporters``, ``zoo/checkpoints`` inside ``zoo/``: the names the code runs under),
``.mutation/`` beside the repository's files (git-ignored; kept between runs, so a second run only tests what
changed: ``--fresh`` starts over).

Then it writes the score per module (killed / (mutants - equivalent): an accepted survivor differs from the
code, so it counts against the score like an unjudged one) and the survivors to
``--report`` (default ``.mutation/report.json``) and prints them, and gates (unless ``--no-gate``): every
survivor must be listed in ``benchmarks/mutation_survivors.toml`` with why it is equivalent or accepted,
and each module must reach ``MIN_SCORE``. Exit 0 when both hold, 1 otherwise.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / ".mutation"
SURVIVORS = REPO / "benchmarks" / "mutation_survivors.toml"
MIN_SCORE = 0.90
#: mutmut's exit codes of a mutant's test run (mutmut.stats.status_by_exit_code)
KILLED = {1, 3}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout", 24: "timeout",
          -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


#: unit tests of the repository's layout itself (they fail, by design, in the installed layout of the stage)
LAYOUT_TESTS = ("test_one_root.py", "test_layout.py")
#: modules of which only some functions are the verification code: the mutants (mutmut name globs) counted
SCOPE = {
    "zoo/exporters/base.py": ["zoo.exporters.base.xǁExportRequestǁquant_scorer__mutmut_*",
                              "zoo.exporters.base.xǁExportRequestǁface_rich__mutmut_*",
                              "zoo.exporters.base.xǁExportRequestǁcalib_split__mutmut_*"],
    "zoo/core/model/layers.py": ["zoo.core.model.layers.x_output_error__mutmut_*"],
}


def globs(module: str) -> list[str]:
    return SCOPE.get(module) or [module.removesuffix(".py").replace("/", ".") + ".*"]


def stage(tests: list[str] | None = None) -> None:
    """The repository's files at their installed places under STAGE (mutmut's own folder kept). ``tests``:
    test files to run instead of the fast tiers (a quicker, partial run: its score is a lower bound)."""
    STAGE.mkdir(exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    roots = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    if (STAGE / "zoo").exists():
        shutil.rmtree(STAGE / "zoo")
    for name, folder in sorted(roots.items(), key=lambda kv: kv[0].count(".")):
        shutil.copytree(REPO / folder, STAGE.joinpath(*name.split(".")), ignore=ignore, dirs_exist_ok=True)
    # docs/, .ci/, benchmarks/: what the unit tier reads (tier table, strict build, README commands, judged survivors)
    for extra in ("tests", "scripts", "docs", ".ci", "benchmarks"):
        if (STAGE / extra).exists():
            shutil.rmtree(STAGE / extra)
        shutil.copytree(REPO / extra, STAGE / extra, ignore=ignore)
    for f in ("setup.py", "README.md", "mkdocs.yml"):
        shutil.copy2(REPO / f, STAGE / f)
    # the fast tiers: tests/unit and every file holding smoke tests, filtered by `-m "unit or smoke"`
    smoke = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if not p.is_relative_to(REPO / "tests" / "unit") and "pytest.mark.smoke" in p.read_text())
    # tests of the repository's own layout (portions beside zoo/), which the staged copy changes on purpose
    layout = [f"--ignore=tests/unit/{t}" for t in LAYOUT_TESTS]
    selection = json.dumps(["tests/unit", *smoke, "-m", "unit or smoke", *layout] if not tests else
                           [*tests, "-m", "unit or smoke"])
    text = (REPO / "pyproject.toml").read_text()
    text = re.sub(r"(?m)^pytest_add_cli_args_test_selection = .*$", lambda _: f"pytest_add_cli_args_test_selection = {selection}", text)
    (STAGE / "pyproject.toml").write_text(text)


def sync_unmutated() -> int:
    """mutmut copies a file into mutants/ only when it is not there yet: refresh every file it does not
    mutate (data, the lock, the other modules) from the stage, so a kept .mutation/ never runs stale code."""
    mutated = set(mutmut_config()["only_mutate"])
    n = 0
    for f in (STAGE / "zoo").rglob("*"):
        rel = f.relative_to(STAGE)
        dst = STAGE / "mutants" / rel
        if not f.is_file() or str(rel) in mutated or "__pycache__" in rel.parts or not dst.parent.is_dir():
            continue
        if not dst.is_file() or dst.read_bytes() != f.read_bytes():
            shutil.copy2(f, dst)
            n += 1
    return n


def mutmut_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]


def results(modules: list[str]) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code}} from mutmut's .meta files."""
    out = {}
    for m in modules:
        meta = STAGE / "mutants" / f"{m}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
        out[m] = {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, g) for g in globs(m))}
    return out


def mutant_diff(name: str, env: dict) -> str:
    cp = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "show", name], cwd=STAGE, env=env,
                        capture_output=True, text=True, timeout=120)
    return cp.stdout


def changed_lines(diff: str) -> tuple[str, str]:
    """The first removed and added line of a mutant's diff, stripped (how the survivors file names it)."""
    minus = next((l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")), "")
    plus = next((l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")), "")
    return minus, plus


def judged() -> list[dict]:
    """The survivors judged in benchmarks/mutation_survivors.toml: [{function, was, now, verdict, why}]."""
    if not SURVIVORS.is_file():
        return []
    entries = tomllib.loads(SURVIVORS.read_text()).get("survivor", [])
    for e in entries:
        if e.get("verdict") not in ("equivalent", "accepted") or not e.get("why"):
            raise SystemExit(f"error: {SURVIVORS}: {e.get('function')}: verdict must be equivalent or accepted, with a why")
    return entries


def function_of(name: str) -> str:
    """zoo.validation.parity.x_compare__mutmut_12 -> zoo.validation.parity.compare"""
    mod, _, fn = name.rpartition(".")
    fn = re.sub(r"__mutmut_\d+$", "", fn)
    fn = fn[2:] if fn.startswith("x_") else fn
    return f"{mod}.{fn.replace('ǁ', '.')}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", help="comma-separated module paths (default: [tool.mutmut] only_mutate)")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested side by side (default 2)")
    ap.add_argument("--fresh", action="store_true", help="forget earlier results")
    ap.add_argument("--report", type=Path, default=STAGE / "report.json")
    ap.add_argument("--no-gate", action="store_true", help="report only")
    ap.add_argument("--report-only", action="store_true", help="do not run: report the last run's results")
    ap.add_argument("--tests", help="comma-separated test files instead of the fast tiers (partial: a lower bound)")
    a = ap.parse_args(argv)
    modules = a.modules.split(",") if a.modules else list(mutmut_config()["only_mutate"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CI")}
    if a.fresh and STAGE.exists():
        shutil.rmtree(STAGE)
    t0 = time.monotonic()
    if not a.report_only:
        stage(a.tests.split(",") if a.tests else None)
        sync_unmutated()
        names = [g for m in modules for g in globs(m)]  # mutmut takes mutant name globs
        mutmut = Path(sys.executable).with_name("mutmut")
        if not mutmut.is_file():
            print("error: mutmut not found: pip install -c zoo/core/data/constraints.txt -e '.[mutation]'", file=sys.stderr)
            return 1
        # the small release of tests/pipeline/test_verify.py, built once (by the unmutated code) instead of once
        # per mutant: its tests mutate `zoo verify`'s side, not the release's
        small = STAGE / "small-release"
        if not (small / "manifest.json").is_file():
            shutil.rmtree(small, ignore_errors=True)
            photos = STAGE / "small-release-photos"
            shutil.rmtree(photos, ignore_errors=True)
            small.mkdir()
            photos.mkdir()
            build = ("import sys; sys.path[:0] = ['tests', 'tests/pipeline']; from pathlib import Path; "
                     "from test_verify import build_small_release; build_small_release(Path(sys.argv[1]), Path(sys.argv[2]))")
            subprocess.run([sys.executable, "-c", build, str(small), str(photos)], cwd=REPO, env=env, check=True)
        env["ZOO_TEST_SMALL_RELEASE"] = str(small)
        with open(STAGE / "mutmut.log", "w") as log:
            cp = subprocess.run([str(mutmut), "run", "--max-children", str(a.jobs), *names], cwd=STAGE, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        if cp.returncode:
            tail = (STAGE / "mutmut.log").read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
            print(f"error: mutmut run exited {cp.returncode} (its log: {STAGE / 'mutmut.log'})", file=sys.stderr)
            return 1
    seconds = round(time.monotonic() - t0, 1)
    known = judged()
    by_key = {(e["function"], e["was"], e["now"]): e for e in known}
    report = {"seconds": seconds, "jobs": a.jobs, "tests": a.tests or "the fast tiers", "min_score": MIN_SCORE, "modules": {}, "survivors": [], "unjudged": []}
    ok = True
    for m, codes in results(modules).items():
        counts = {"mutants": len(codes), "killed": 0, "survived": 0, "no tests": 0, "timeout": 0, "other": 0,
                  "not checked": 0, "equivalent": 0, "accepted": 0}
        for name, code in sorted(codes.items()):
            if code in KILLED:
                counts["killed"] += 1
                continue
            if code is None:  # the run stopped before this mutant: neither killed nor survived
                counts["not checked"] += 1
                continue
            status = STATUS.get(code, "other")
            if status == "timeout":  # a mutant that hangs the tests is caught by their timeout: killed
                counts["timeout"] += 1
                continue
            counts[status if status in counts else "other"] += 1
            was, now = changed_lines(mutant_diff(name, env))
            fn = function_of(name)
            entry = by_key.get((fn, was, now))
            row = {"module": m, "mutant": name, "function": fn, "status": status, "was": was, "now": now}
            if entry:
                counts[entry["verdict"]] += 1
                row["verdict"] = entry["verdict"]
            else:
                report["unjudged"].append(row)
            report["survivors"].append(row)
        denominator = counts["mutants"] - counts["not checked"] - counts["equivalent"]
        counts["score"] = round((counts["killed"] + counts["timeout"]) / denominator, 4) if denominator else 1.0
        report["modules"][m] = counts
        ok &= counts["score"] >= MIN_SCORE and not counts["not checked"]
    ok &= not report["unjudged"]
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(json.dumps(report, indent=2) + "\n")
    for m, c in report["modules"].items():
        checked = c["mutants"] - c["not checked"]
        print(f"{m}: {c['score']:.1%} of {checked - c['equivalent']} non-equivalent mutants killed "
              f"({c['mutants']} mutants, {checked} checked; killed {c['killed']}, timeout {c['timeout']}, survived "
              f"{c['survived']}, no tests {c['no tests']}; judged equivalent {c['equivalent']}, accepted {c['accepted']})")
    for r in report["unjudged"]:
        print(f"survivor not judged in {SURVIVORS.relative_to(REPO)}: {r['mutant']} ({r['status']})\n    - {r['was']}\n    + {r['now']}")
    print(f"mutation run: {seconds} s with {a.jobs} jobs; report {a.report}")
    return 0 if ok or a.no_gate else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
