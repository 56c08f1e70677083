"""Issue 16: hostile artifacts of every registered target, opened by `zoo detect --artifact` and `zoo verify`.

Driven from the registry (`zoo.exporters.target_names()`): a new target is attacked with no edit here.
One release of two models (fp32, every available target) is built once per session; the artifact
of the first model is attacked, the second model supplies "a companion file of another model".

- CLI (a few cases per target; each call costs seconds): a header byte flipped (manifest present),
  a file truncated in the middle (sidecar only), the primary truncated to its header with
  --no-verify (the runtime's own failure), a companion file of another model (manifest present;
  and with an old sidecar that records no hashes), a sidecar (or embedded metadata) that disagrees
  with its file, and `zoo verify` on a corrupt file whose manifest sha256 was updated to match.
  Every case: exit 1 (detect) or 2 (verify), one `error:` line naming the file, no traceback, no hang.
- In process, with hypothesis: any change to any file against the integrity check, and
  truncations, byte flips and digit changes (text formats stay text: counts, shapes, indices) in
  the structural parts (start, middle, end) of every file through the
  probe (the real runtime, in an isolated worker), whose count adapts to the runtime's speed.
- Runtimes that crash (SIGSEGV, abort) or hang opening a file, injected through ZOO_TARGET_PLUGINS.

ZOO_FUZZ_EXAMPLES multiplies the hypothesis examples (a long campaign: ZOO_FUZZ_EXAMPLES=20);
ZOO_FUZZ_SEED sets the seed ("random": a fresh one, printed on failure).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from conftest import ROOT, assert_clean_error, zoo
from zoo.exporters import get_target, target_names
from zoo.exporters.base import write_sidecar
from fuzzing import EXAMPLES, SEED, fuzz
from zoo.core.errors import ZooError
from zoo.core.fsutil import sha256_file
from zoo.core.integrity import verify_artifact
from zoo.core.meta import ArtifactMeta, read_meta, sidecar_path
from zoo.pipeline.probe import probe_artifact


MODELS = ("slim-320", "rfb-320")  # the one attacked, the one companions come from
IMAGE = ROOT / "zoo" / "core" / "data" / "images" / "camera.jpg"
PROBE_TIMEOUT = 60.0  # seconds a probe may take before it counts as a hang
CLI_BOUND = 240  # seconds one CLI call may take, hostile input included
CLI_ENV = {"ZOO_PROBE_TIMEOUT": str(PROBE_TIMEOUT)}
PROBE_BUDGET = 5.0  # seconds of probe fuzzing per target in the default run (x ZOO_FUZZ_EXAMPLES)
REGIONS = ("start", "middle", "end")



# --------------------------------------------------------------------------- material

@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """A release of MODELS at fp32 over every available registered target: (folder, manifest).
    ZOO_FUZZ_RELEASE=DIR keeps it in DIR and reuses it there (a campaign of many runs)."""
    names = [t for t in target_names() if get_target(t).available()]
    keep = os.environ.get("ZOO_FUZZ_RELEASE")
    out = Path(keep) if keep else tmp_path_factory.mktemp("hostile") / "release"
    if not (out / "manifest.json").is_file():
        zoo("release", "--out", out, "--models", ",".join(MODELS), "--targets", ",".join(names), "--precisions", "fp32",
            "--jobs", "2", check=0)
    return out, json.loads((out / "manifest.json").read_text())


def artifact_of(manifest: dict, model: str, target: str) -> dict:
    arts = [a for a in manifest["artifacts"] if a["model"] == model and a["target"] == target]
    if not arts:
        pytest.fail(f"the release has no {model} {target} artifact; failed: {manifest['failed']}")
    return arts[0]


def sidecar_rel(art: dict) -> str:
    return sidecar_path(Path(art["primary"])).as_posix()


def data_files(art: dict) -> list[str]:
    """The artifact's files other than its sidecar, primary first."""
    rest = sorted(f["path"] for f in art["files"] if f["path"] not in (art["primary"], sidecar_rel(art)))
    return [art["primary"], *rest]


def largest_companion(folder: Path, art: dict) -> str:
    """The biggest file beside the primary (the weights), or the primary of a one-file artifact."""
    files = data_files(art)
    return max(files[1:], key=lambda r: (folder / r).stat().st_size) if len(files) > 1 else files[0]


def swap_from_other_model(folder: Path, art: dict, other: dict) -> tuple[str, str] | None:
    """(the biggest companion file of ``art`` — the weights —, the other model's counterpart), or
    None when there is none or both models have the same bytes there (a SavedModel's variables)."""
    if len(data_files(art)) < 2:
        return None
    mine = largest_companion(folder, art)
    theirs = mine.replace(art["model"], other["model"])
    if theirs not in data_files(other) or sha256_file(folder / mine) == sha256_file(folder / theirs):
        return None
    return mine, theirs


def stage(folder: Path, manifest: dict, art: dict, dst: Path, with_manifest: bool) -> Path:
    """Copy one artifact's files (and the manifest) into ``dst``; return the primary there."""
    for f in art["files"]:
        (dst / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / f["path"], dst / f["path"])
    if with_manifest:
        shutil.copyfile(folder / "manifest.json", dst / "manifest.json")
    return dst / art["primary"]


KINDS = ("flip", "truncate", "digit")
_DIGITS = b"0123456789"


def mutate(path: Path, how: str, region: str, offset: int = 4, value: int = 0xFF) -> None:
    """Truncate ``path`` at, or flip the byte at, ``offset`` into its start, middle or end; or
    ("digit") change the digit nearest there into another digit, which keeps a text file (an ncnn
    .param, a .prototxt) valid text while changing a count, a shape or an index."""
    data = bytearray(path.read_bytes())
    n = len(data)
    base = {"start": 0, "middle": n // 2 - 32, "end": n - 64}[region]
    pos = min(max(0, base + offset), n - 1)
    if how == "digit":
        digits = [i for i in range(max(0, pos - 256), min(n, pos + 256)) if data[i] in _DIGITS]
        if digits:
            i = min(digits, key=lambda j: abs(j - pos))
            data[i] = _DIGITS[(data[i] - 48 + 1 + value % 9) % 10]
            path.write_bytes(bytes(data))
            return
        how = "flip"
    if how == "truncate":
        data = data[:pos]
    else:
        data[pos] ^= value
    path.write_bytes(bytes(data))


def detect(primary: Path, *extra) -> "subprocess.CompletedProcess":  # noqa: F821
    return zoo("detect", IMAGE, "--artifact", primary, *extra, env=CLI_ENV, timeout=CLI_BOUND)


def assert_detect_refuses(cp, *names: str) -> str:
    """Exit 1, one `error:` line naming one of ``names``, no traceback."""
    assert_clean_error(cp)
    line = next(l for l in cp.stderr.splitlines() if l.startswith("error:"))
    assert any(n in line for n in names), f"none of {names} in {line!r}"
    return line


def target_params():
    return [pytest.param(t, id=t) for t in target_names()]


#: targets whose artifact has companion files (a .bin beside a .param, ...): another model's companion can be swapped in
MULTI_FILE = [t for t in target_names() if len(get_target(t).suffixes) > 1]
#: (target, where its files' hashes are recorded): the manifest always, a sidecar unless the metadata is embedded
HASH_SOURCES = [(t, s) for t in target_names() for s in ("manifest", "sidecar") if s == "manifest" or not get_target(t).embeds_metadata]


@pytest.fixture(params=target_params())
def target(request):
    t = get_target(request.param)
    if not t.available():
        pytest.skip(f"target {t.name} needs {', '.join(t.missing())}")
    return t.name


# --------------------------------------------------------------------------- zoo detect --artifact

def test_a_flipped_header_byte_is_refused_against_the_manifest(target, release, tmp_path):
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    primary = stage(folder, manifest, art, tmp_path, with_manifest=True)
    mutate(primary, "flip", "start")
    line = assert_detect_refuses(detect(primary), primary.name)
    assert "sha256 does not match" in line and "manifest.json" in line and "--no-verify" in line


def test_a_file_truncated_in_the_middle_is_refused_against_its_sidecar(target, release, tmp_path):
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    primary = stage(folder, manifest, art, tmp_path, with_manifest=False)
    victim = tmp_path / largest_companion(folder, art)
    mutate(victim, "truncate", "middle")
    line = assert_detect_refuses(detect(primary), victim.name, primary.name)
    if (tmp_path / sidecar_rel(art)).is_file():  # hashes recorded: the integrity check names the file
        assert victim.name in line and "sha256 does not match its sidecar" in line


def test_no_verify_leaves_a_truncated_header_to_the_runtime_which_fails_in_one_line(target, release, tmp_path):
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    primary = stage(folder, manifest, art, tmp_path, with_manifest=True)
    mutate(primary, "truncate", "start", offset=16)
    line = assert_detect_refuses(detect(primary, "--no-verify"), primary.name, primary.parent.name)
    assert "sha256" not in line


def test_a_companion_of_another_model_is_refused(target, release, tmp_path):
    folder, manifest = release
    art, other = artifact_of(manifest, MODELS[0], target), artifact_of(manifest, MODELS[1], target)
    primary = stage(folder, manifest, art, tmp_path, with_manifest=True)
    mine, theirs = swap_from_other_model(folder, art, other) or (art["primary"], other["primary"])
    shutil.copyfile(folder / theirs, tmp_path / mine)
    line = assert_detect_refuses(detect(primary), Path(mine).name)
    assert "sha256 does not match" in line


@pytest.mark.parametrize("target", MULTI_FILE, indirect=True)
def test_a_companion_of_another_model_without_recorded_hashes_is_refused(target, release, tmp_path):
    """An older sidecar (no "files") and no manifest: no hashes to check, so the runtime refuses the
    pair (OpenCV) or the probe's output check does (ncnn reads another model's .bin without complaint)."""
    folder, manifest = release
    art, other = artifact_of(manifest, MODELS[0], target), artifact_of(manifest, MODELS[1], target)
    swap = swap_from_other_model(folder, art, other)
    assert swap is not None, f"{target} declares companion files, yet none differs between two models"
    primary = stage(folder, manifest, art, tmp_path, with_manifest=False)
    side = tmp_path / sidecar_rel(art)
    if side.is_file():
        d = json.loads(side.read_text())
        d.pop("files", None)
        side.write_text(json.dumps(d))
    mine, theirs = swap
    shutil.copyfile(folder / theirs, tmp_path / mine)
    assert_detect_refuses(detect(primary), Path(mine).name, primary.name, primary.parent.name)


def _flip_head(d: dict) -> dict:
    return d | {"head": "decoded" if d["head"] == "raw" else "raw"}


def test_metadata_that_disagrees_with_its_file_is_refused(target, release, tmp_path):
    """The sidecar (or the embedded metadata) names the other head: the probe's outputs say otherwise."""
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    primary = stage(folder, manifest, art, tmp_path, with_manifest=False)
    side = tmp_path / sidecar_rel(art)
    if side.is_file():
        side.write_text(json.dumps(_flip_head(json.loads(side.read_text()))))
    elif primary.suffix == ".onnx":
        import onnx  # heavy: only to rewrite an ONNX file's embedded metadata

        m = onnx.load(str(primary))
        prop = next(p for p in m.metadata_props if p.key == "zoo.meta")
        prop.value = json.dumps(_flip_head(json.loads(prop.value)))
        onnx.save(m, str(primary))
    else:
        pytest.skip(f"{primary.name}: metadata embedded in a format this test cannot rewrite")
    line = assert_detect_refuses(detect(primary), primary.name)
    assert "does not describe this file" in line


def _param_edit(layer: str):
    """In an ncnn .param, the ``layer``'s ``7=`` (groups) written as a second ``0=`` (one digit)."""
    def edit(primary: Path) -> bool:
        lines = primary.read_text().split("\n")
        hit = [i for i, l in enumerate(lines) if l.split()[1:2] == [layer] and " 7=" in l]
        if hit:
            lines[hit[0]] = lines[hit[0]].replace(" 7=", " 0=", 1)
            primary.write_text("\n".join(lines))
        return bool(hit)
    return edit


def _prototxt_bottom_byte(primary: Path) -> bool:
    """In a .prototxt, one byte of the last layer's last bottom blob name made non-UTF-8."""
    data = bytearray(primary.read_bytes())
    i = data.rfind(b'output_0"')
    if i < 0:
        return False
    data[i + 1] = 0x9C
    primary.write_bytes(bytes(data))
    return True


#: single-byte changes the fuzzing found (slim-320); before the probe, the first two killed `zoo detect`
#: with SIGSEGV (exit 139) and the third printed faces at [-5.5e33, -inf, ...] with exit 0
FOUND = {
    "ncnn-dup-param-id-crash": ("ncnn", _param_edit("convdwrelu_17")),
    "ncnn-dup-param-id-inf": ("ncnn", _param_edit("convdwrelu_0")),
    "caffe-bottom-name-crash": ("caffe", _prototxt_bottom_byte),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_single_byte_changes_the_fuzzing_found_are_one_line(case, release, tmp_path):
    name, edit = FOUND[case]
    if name not in target_names() or not get_target(name).available():
        pytest.skip(f"target {name} is not available")
    folder, manifest = release
    primary = stage(folder, manifest, artifact_of(manifest, MODELS[0], name), tmp_path, with_manifest=False)
    assert edit(primary), f"{primary.name} no longer has what {case} edits: the regression case is stale"
    assert_detect_refuses(detect(primary, "--no-verify"), primary.name)


# --------------------------------------------------------------------------- zoo verify

def test_verify_fails_a_corrupt_file_naming_it_also_when_its_hash_was_updated(target, release, tmp_path):
    """The sha256 check fails it first; with the manifest's sha256 updated to the corrupt bytes, the
    runtime (in its worker) fails it: a FAIL line naming the file, exit 2, never a traceback."""
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    dst = tmp_path / "release"
    shutil.copytree(folder, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["artifacts"] = [a for a in m["artifacts"] if a["target"] != target or a["model"] == MODELS[0]]
    (dst / "manifest.json").write_text(json.dumps(m))
    victim = dst / art["primary"]
    mutate(victim, "truncate", "start", offset=16)
    runtime = get_target(target).runtimes[0]
    for updated in (False, True):
        if updated:
            entry = next(f for a in m["artifacts"] for f in a["files"] if f["path"] == art["primary"])
            entry.update(sha256=sha256_file(victim), bytes=victim.stat().st_size)
            (dst / "manifest.json").write_text(json.dumps(m))
        cp = zoo("verify", dst, "--runtime", runtime, env=CLI_ENV, timeout=CLI_BOUND)
        assert cp.returncode == 2, f"exit {cp.returncode}\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
        assert "Traceback" not in cp.stdout + cp.stderr, cp.stderr
        fails = [l for l in cp.stdout.splitlines() if l.startswith("FAIL")]
        assert len(fails) == 1 and art["primary"] in fails[0], cp.stdout
        assert ("changed since release" in fails[0]) != updated, fails[0]
        assert [l for l in cp.stderr.splitlines() if l.startswith("error:")], cp.stderr


# --------------------------------------------------------------------------- in process, many cases

@st.composite
def mutations(draw, files: list[str]):
    return (draw(st.sampled_from(files)), draw(st.sampled_from(KINDS)), draw(st.sampled_from(REGIONS)),
            draw(st.integers(0, 63)), draw(st.integers(1, 255)))


@pytest.mark.parametrize("target,source", HASH_SOURCES, indirect=["target"])
def test_any_change_to_any_file_fails_the_integrity_check(target, release, source):
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    has_sidecar = sidecar_rel(art) in {f["path"] for f in art["files"]}
    assert has_sidecar or source == "manifest", f"{target} writes no sidecar although its metadata is not embedded"
    files = [f["path"] for f in art["files"]]

    @fuzz(20)
    @given(mutations(files))
    def run(mut):
        rel, how, region, offset, value = mut
        with tempfile.TemporaryDirectory() as td:
            dst = Path(td)
            primary = stage(folder, manifest, art, dst, with_manifest=source == "manifest")
            mutate(dst / rel, how, region, offset, value)
            try:
                verify_artifact(primary)
            except ZooError as e:
                assert "\n" not in str(e)
                if source == "manifest" or rel != sidecar_rel(art):
                    assert Path(rel).name in str(e), str(e)
                return
            # only the sidecar's own metadata is not covered by its hashes (the probe checks it against the file)
            assert source == "sidecar" and rel == sidecar_rel(art), f"{rel} {how} {region}+{offset} passed the check"

    run()


def test_structural_damage_through_the_runtime_is_refused_in_one_line(target, release):
    """Truncations and byte flips in the start, middle and end of every file, each opened by the real
    runtime in an isolated worker (the probe): it runs, or it fails with one line naming the file;
    a crash or hang is caught and named, never fatal. Examples: PROBE_BUDGET seconds at this runtime's speed."""
    folder, manifest = release
    art = artifact_of(manifest, MODELS[0], target)
    with tempfile.TemporaryDirectory() as td:
        primary = stage(folder, manifest, art, Path(td), with_manifest=False)
        t0 = time.monotonic()
        probe_artifact(primary, read_meta(primary), timeout=PROBE_TIMEOUT)  # the intact artifact passes
        once = time.monotonic() - t0
    n = max(2, int(PROBE_BUDGET * EXAMPLES / max(once, 0.1)))
    outcomes: dict[str, int] = {}

    @fuzz(n, scale=False)  # n already holds the budget (x ZOO_FUZZ_EXAMPLES)
    @given(mutations(data_files(art)))
    def run(mut):
        rel, how, region, offset, value = mut
        note(f"seed {SEED}: {rel} {how} at {region}+{offset} (^{value})")
        with tempfile.TemporaryDirectory() as td:
            dst = Path(td)
            primary = stage(folder, manifest, art, dst, with_manifest=False)
            mutate(dst / rel, how, region, offset, value)
            t = time.monotonic()
            try:
                probe_artifact(primary, read_meta(primary), timeout=PROBE_TIMEOUT)
                kind = "ran"
            except ZooError as e:
                msg = str(e)
                assert "\n" not in msg and "Traceback" not in msg, msg
                assert any(s in msg for s in (Path(rel).name, primary.name, primary.parent.name)), msg
                kind = ("crash" if "crashed opening it" in msg else "hang" if "hung opening it" in msg
                        else "mismatch" if "does not describe" in msg else "refused")
            # a hang is killed at the timeout; anything else costs a few intact probes at most (measured above)
            assert time.monotonic() - t < PROBE_TIMEOUT + 5 * once
            outcomes[kind] = outcomes.get(kind, 0) + 1

    run()
    print(f"\n{target}: {sum(outcomes.values())} probes ({once:.1f} s each intact): {outcomes}")


# --------------------------------------------------------------------------- runtimes that die

@pytest.mark.parametrize("plugin,expected", [("segv=hostile_plugins:SegvTarget", "segvrt crashed opening it (SIGSEGV)"),
                                             ("abort=hostile_plugins:AbortTarget", "abortrt crashed opening it (SIGABRT)"),
                                             ("hang=hostile_plugins:HangTarget", "hangrt hung opening it (killed after 3 s)")])
def test_a_runtime_that_crashes_or_hangs_opening_a_file_is_one_line(tmp_path, plugin, expected):
    name = plugin.split("=")[0]
    (tmp_path / f"m.{name}").write_bytes(b"\x00" * 64)
    meta = ArtifactMeta(model_id="slim-320", arch="slim", input_size=(320, 240), labels=("BACKGROUND", "face"),
                        head="raw", checkpoint_sha256="0" * 64, target=name)
    write_sidecar(tmp_path, Path(f"m.{name}"), meta, [Path(f"m.{name}")])
    env = {"ZOO_TARGET_PLUGINS": plugin, "PYTHONPATH": str(ROOT / "tests" / "targets"), "ZOO_PROBE_TIMEOUT": "3"}
    # no wall-clock bound: the message says the hang was killed at ZOO_PROBE_TIMEOUT (3 s), and a run that
    # did not return within 60 s fails on the subprocess timeout
    cp = zoo("detect", IMAGE, "--artifact", tmp_path / f"m.{name}", env=env, timeout=60)
    assert_clean_error(cp, f"m.{name}: {expected}", f"not a {name} model")
