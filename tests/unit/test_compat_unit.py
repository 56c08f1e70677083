"""Issue 19 (`zoo compat`), the parts that need no environment: the matrix file, --runtime parsing, the
runner modules importing without torch or OpenCV, and compat.json read back whatever it holds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.validation.compat import SCHEMA, markdown_section, read_compat, render_text, summarize
from zoo.core.errors import ZooError
from zoo.pipeline.compat_env import load_matrix, parse_matrix, parse_runtime_specs

ROOT = Path(__file__).resolve().parents[2]


def test_default_matrix_covers_every_runtime_with_reasons():
    from zoo.exporters import runtime_names

    m = load_matrix()
    for rt in runtime_names():
        if rt in ("tfjs-wasm", "tfjs-cpu", "ort-web"):  # npm runtimes: `zoo compat` builds Python environments only
            assert rt not in m.runtimes
            continue
        assert rt in m.runtimes, f"{rt} has no entry in the matrix"
        defaults = [s for s in m.default([rt])]
        if rt == "tensorflow":  # deliberately none (size): documented in the file
            assert not defaults
            continue
        assert 3 <= len(defaults) <= 5, (rt, defaults)
        assert all(len(s.why) > 20 for s in defaults)
        assert len({s.env_name for s in defaults}) == len(defaults)
    # LiteRT's older line comes from tflite-runtime, ordered before ai-edge-litert
    lite = sorted(m.default(["litert"]), key=lambda s: s.sort_key())
    assert lite[0].package == "tflite-runtime" and lite[0].module == "tflite_runtime"


def test_runtime_option_parsing():
    m = load_matrix()
    known = ["onnxruntime", "mnn", "ncnn", "litert", "opencv"]
    specs = parse_runtime_specs("onnxruntime==1.17.3, mnn==3.0.0,tflite-runtime==2.14.0", m, known)
    assert [(s.runtime, s.package, s.version) for s in specs] == [
        ("onnxruntime", "onnxruntime", "1.17.3"), ("mnn", "MNN", "3.0.0"), ("litert", "tflite-runtime", "2.14.0")]
    assert specs[0].numpy == "numpy<2"  # the matrix entry's pin
    assert parse_runtime_specs("onnxruntime==1.18.0", m, known)[0].numpy == "numpy"  # not in the matrix: plain
    for bad, needle in (("onnxruntime", "NAME==VERSION"), ("onnxrutime==1.17.3", "did you mean"), ("", "empty"),
                        ("mnn==3.0.0; rm -rf /", "NAME==VERSION")):
        with pytest.raises(ZooError, match=needle):
            parse_runtime_specs(bad, m, known)


@pytest.mark.parametrize("data, needle", [
    ({}, "schema = 1"),
    ({"schema": 1, "runtime": {"x": {"package": "x"}}}, "'module'"),
    ({"schema": 1, "runtime": {"x": {"package": "x y", "module": "x"}}}, "not a valid name"),
    ({"schema": 1, "runtime": {"x": {"package": "x", "module": "x", "version": [{"version": "1.0"}]}}}, "'why'"),
    ({"schema": 1, "runtime": {"x": {"package": "x", "module": "x", "version": [
        {"version": "1.0", "why": "w", "package": "other"}]}}}, "aliases"),
    ({"schema": 1, "runtime": {"x": {"package": "x", "module": "x", "version": [
        {"version": "1.0", "why": "w", "numpy": "scipy"}]}}}, "NumPy"),
    ({"schema": 1, "runtime": {"x": {"package": "x", "module": "x", "version": [
        {"version": "1.0", "why": "w"}, {"version": "1.0", "why": "w"}]}}}, "twice"),
])
def test_a_bad_matrix_is_one_line(data, needle):
    with pytest.raises(ZooError, match=needle):
        parse_matrix(data)


_BLOCKER = r"""
import importlib, importlib.abc, sys
import zoo  # first: its source-tree finder goes to the front of sys.meta_path, and Refuse must come before it
BLOCK = {"torch", "cv2", "onnx", "onnxsim", "tensorflow", "scipy", "typer", "tqdm", "pnnx", "zoo.checkpoints",
         "zoo.validation"}
def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCK)
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if blocked(name):
            raise ImportError(f"refused: {name}")
sys.meta_path.insert(0, Refuse())
import zoo.pipeline.compat_worker
from zoo.exporters import get_target, target_names
for t in target_names():
    get_target(t)
for m in ("zoo.exporters.onnx.runner", "zoo.exporters.mnn.runner", "zoo.exporters.ncnn.runner", "zoo.exporters.tflite.runner",
          "zoo.exporters.caffe.runner", "zoo.core.runtime", "zoo.core.meta"):
    importlib.import_module(m)
print("ok", sorted(n for n in sys.modules if blocked(n)))
"""


def test_runner_modules_import_without_torch_or_opencv():
    """What a compat environment imports (the worker, the registry, every target's package and runner)
    must not need torch, OpenCV, the converters or the layers above the exporters."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    cp = subprocess.run([sys.executable, "-c", _BLOCKER], capture_output=True, text=True, env=env, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert cp.stdout.strip() == "ok []"


def _cell(**kw) -> dict:
    c = {"artifact": "rfb-320 mnn/int8/raw", "model": "rfb-320", "target": "mnn", "precision": "int8", "head": "raw",
         "primary": "mnn/rfb-320-raw-int8.mnn", "sha256": "ab" * 32, "runtime": "mnn", "package": "MNN",
         "version": "3.6.1", "rank": 1, "status": "PASS", "message": None,
         "parity": {"passed": True, "matched": 3, "reference": 3, "extra": 0, "max_abs": {"scores": 0.01}}}
    c.update(kw)
    return c


def test_summary_oldest_passing_and_table():
    cells = [_cell(version="3.0.0", status="cannot-load", message="MNN cannot load x", parity=None),
             _cell(version="3.1.0"), _cell(version="3.6.1"),
             _cell(version="9.9.9", status="unavailable", message="not available", parity=None)]
    s = summarize(cells)["rfb-320 mnn/int8/raw"]["mnn"]
    assert s["oldest_passing"] == "3.1.0" and s["all_newer_pass"]
    doc = {"schema": SCHEMA, "results": cells}
    text = render_text(doc)
    assert "cannot-load [1]" in text and "[1] rfb-320 mnn/int8/raw in mnn 3.0.0: MNN cannot load x" in text
    md = "\n".join(markdown_section(doc, None, "rel"))
    assert "runs on mnn >= 3.1.0" in md and "3.0.0 cannot-load" in md


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=10)
cell_keys = list(_cell().keys()) + ["schema", "results", "python", "created", "evidence", "summary"]


@fuzz(80)
@given(mode=st.sampled_from(["cell", "doc", "bytes"]),
       junk=st.dictionaries(st.sampled_from(cell_keys) | st.text(max_size=8), json_values, max_size=5),
       raw=st.binary(max_size=200))
def test_damaged_compat_json_is_one_problem_line_never_a_traceback(tmp_path_factory, mode, junk, raw):
    path = tmp_path_factory.mktemp("c") / "compat.json"
    if mode == "cell":
        cell = _cell()
        cell.update(junk)
        path.write_text(json.dumps({"schema": SCHEMA, "results": [cell]}))
    elif mode == "doc":
        path.write_text(json.dumps({"schema": SCHEMA, "results": [_cell()], **{k: v for k, v in junk.items() if k != "schema"}}))
    else:
        path.write_bytes(raw)
    doc, problem = read_compat(path)
    assert (doc is None) != (problem is None)
    if problem:
        assert "\n" not in problem
    lines = markdown_section(doc, problem, "rel", {"mnn/rfb-320-raw-int8.mnn": "cd" * 32})
    assert lines[0] == "### Runtime compatibility"
    if doc is not None:
        render_text(doc)
        summarize(doc["results"])


def test_runs_on_never_claims_a_range_a_failure_contradicts():
    """Issue 19 (a): A < B < C with B failing is "runs on >= C; also on A", never ">= A"."""
    from zoo.validation.compat import runs_on

    cells = [_cell(version="3.0.0"), _cell(version="3.1.0"), _cell(version="3.4.1", status="cannot-load", parity=None),
             _cell(version="3.6.1")]
    s = summarize(cells)["rfb-320 mnn/int8/raw"]["mnn"]
    assert s["oldest_passing"] == "3.0.0" and not s["all_newer_pass"] and s["runs_from"] == "3.6.1"
    line = runs_on("mnn", s)
    assert line.startswith("runs on mnn >= 3.6.1; also on 3.0.0, 3.1.0 (tested: ")
    assert "3.4.1 cannot-load" in line and ">= 3.0.0" not in line
    # the newest tested release fails: no range at all
    s = summarize([_cell(version="3.0.0"), _cell(version="3.6.1", status="FAIL")])["rfb-320 mnn/int8/raw"]["mnn"]
    assert s["runs_from"] is None
    assert runs_on("mnn", s).startswith("runs on mnn 3.0.0 only; not on 3.6.1 (FAIL)")
    # an artifact converted for an older release: the claim is checked against the tested releases
    built = [dict(c, artifact="rfb-320 mnn/int8/raw@mnn3.0.0", min_runtime="mnn==3.0.0") for c in cells]
    s = summarize(built)["rfb-320 mnn/int8/raw@mnn3.0.0"]["mnn"]
    assert s["built_for"] == "mnn==3.0.0" and s["built_for_holds"] is False
    assert "built for mnn==3.0.0 and newer (not borne out" in runs_on("mnn", s)
    s = summarize([c for c in built if c["status"] == "PASS"])["rfb-320 mnn/int8/raw@mnn3.0.0"]["mnn"]
    assert s["built_for_holds"] is True and runs_on("mnn", s).startswith("runs on mnn >= 3.0.0; built for mnn==3.0.0 and newer (tested")


def _release_with_card(root: Path) -> Path:
    """A release folder as `zoo release` leaves it, reduced to one artifact and its model's card."""
    from zoo.core.manifest import Artifact, FileEntry, Manifest, write_manifest

    rel = root / "rel"
    (rel / "mnn").mkdir(parents=True)
    (rel / "cards").mkdir()
    (rel / "mnn" / "rfb-320-raw-int8.mnn").write_bytes(b"mnn bytes")
    (rel / "cards" / "rfb-320.md").write_text("# rfb-320: the card\n\n## Artifacts\n", encoding="utf-8")
    art = Artifact("rfb-320", "mnn", "int8", "raw", "NCHW", "mnn/rfb-320-raw-int8.mnn",
                   [FileEntry.of(rel, "mnn/rfb-320-raw-int8.mnn")], parity={"passed": True})
    write_manifest(rel, Manifest(artifacts=[art], release={"models": ["rfb-320"], "targets": ["mnn"], "precisions": ["int8"]},
                                 models={"rfb-320": {}}, files=[FileEntry.of(rel, "cards/rfb-320.md")]))
    sha = art.files[0].sha256
    cells = [_cell(version=v, status=st_, sha256=sha, parity=None if st_ != "PASS" else _cell()["parity"])
             for v, st_ in (("3.0.0", "PASS"), ("3.4.1", "cannot-load"), ("3.6.1", "PASS"))]
    (rel / "compat.json").write_text(json.dumps({"schema": SCHEMA, "python": "Python 3.11", "results": cells}))
    return rel


def test_card_view_appends_compat_and_leaves_the_release_unchanged(tmp_path):
    """Issue 19 (a): `zoo card DIR --model M` prints the release's card with a compatibility section from
    compat.json; the card in the release (hashed content) is not touched, and the view is never written
    into the release."""
    from conftest import assert_clean_error, zoo

    rel = _release_with_card(tmp_path)
    before = {p: p.read_bytes() for p in rel.rglob("*") if p.is_file()}
    cp = zoo("card", rel, "--model", "rfb-320", check=0)
    assert cp.stdout.startswith("# rfb-320: the card\n\n## Artifacts\n\n## Runtime compatibility\n")
    assert ("- `mnn/int8/raw` (`mnn/rfb-320-raw-int8.mnn`): runs on mnn >= 3.6.1; also on 3.0.0 "
            "(tested: 3.0.0 PASS, 3.4.1 cannot-load, 3.6.1 PASS)") in cp.stdout
    zoo("card", rel, "--model", "rfb-320", "--out", tmp_path / "view.md", check=0)
    assert (tmp_path / "view.md").read_text() == cp.stdout
    assert_clean_error(zoo("card", rel, "--model", "rfb-320", "--out", rel / "cards" / "view.md"), "inside the release")
    assert_clean_error(zoo("card", rel, "--model", "slim-320"), "model 'slim-320' is not in rel")
    assert {p: p.read_bytes() for p in rel.rglob("*") if p.is_file()} == before
    doc = json.loads((rel / "compat.json").read_text())  # compat ran on another file than the manifest lists now
    (rel / "compat.json").write_text(json.dumps({**doc, "results": [{**c, "sha256": "cd" * 32} for c in doc["results"]]}))
    assert "**stale: the file changed since `zoo compat` ran**" in zoo("card", rel, "--model", "rfb-320", check=0).stdout
    (rel / "compat.json").write_text("{")
    assert "> **compat.json unusable**" in zoo("card", rel, "--model", "rfb-320", check=0).stdout
    (rel / "cards" / "rfb-320.md").write_text("# forged\n")
    assert_clean_error(zoo("card", rel, "--model", "rfb-320"), "cards/rfb-320.md: sha256 mismatch")
    assert_clean_error(zoo("card", tmp_path / "nowhere", "--model", "rfb-320"), "not a folder")


def test_prune_removes_only_our_environments_the_matrix_no_longer_names(tmp_path):
    """Issue 19 (c): `zoo compat --prune` removes cached environments (and unavailable markers) that no
    release of the matrix file (or of --runtime) names; another Python's, half-built ones and anything
    that is not ours stay."""
    from conftest import assert_clean_error, zoo
    from zoo.pipeline.compat_env import READY

    m = load_matrix()
    cache = tmp_path / "envs"

    def env(name: str, ready: bool = True) -> Path:
        (cache / name / "bin").mkdir(parents=True)
        (cache / name / "bin" / "python").write_text("")
        if ready:
            (cache / name / READY).write_text("{}")
        return cache / name

    current = env(m.spec("mnn", "3.0.0").env_name)
    gone = env(m.spec("mnn", "2.9.0").env_name)  # not in the matrix: a release that left it
    changed = env(m.spec("mnn", "3.0.0").env_name.rsplit("-", 1)[0] + "-0badc0de")  # its entry changed
    other_python = env("mnn-2.9.0-py27-0badc0de")
    building = env(f".{m.spec('mnn', '3.1.0').env_name}.abc.tmp", ready=False)
    not_ours = env(m.spec("mnn", "2.8.0").env_name, ready=False)
    (cache / f"{m.spec('onnxruntime', '1.14.1').env_name}.unavailable.json").write_text("{}")
    (cache / f"{m.spec('onnxruntime', '1.20.1').env_name}.unavailable.json").write_text("{}")
    (cache / "notes.txt").write_text("mine")
    env_vars = {"ZOO_COMPAT_DIR": str(cache)}
    cp = zoo("compat", "--prune", "--runtime", "mnn==2.9.0", "--json", env=env_vars, check=0)
    assert json.loads(cp.stdout)["removed"] == [  # --runtime keeps mnn==2.9.0
        {"name": changed.name, "bytes": 2}, {"name": f"{m.spec('onnxruntime', '1.14.1').env_name}.unavailable.json", "bytes": 2}]
    assert gone.is_dir()
    cp = zoo("compat", "--prune", env=env_vars, check=0)
    assert cp.stdout.startswith("removed 1 environment(s) and marker(s)") and "removed " + gone.name in cp.stderr
    assert not gone.exists() and not changed.exists()
    for p in (current, other_python, building, not_ours, cache / "notes.txt",
              cache / f"{m.spec('onnxruntime', '1.20.1').env_name}.unavailable.json"):
        assert p.exists(), p
    assert [p.name for p in cache.iterdir() if p.name.endswith(".gone")] == []
    assert_clean_error(zoo("compat", "--prune", tmp_path, env=env_vars), "--prune takes no folders")
