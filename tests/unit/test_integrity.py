"""Issue 16, the pure logic of hostile artifacts: metadata read from whatever a file holds, sidecar
hashes (integrity on use), the output/metadata consistency check and the probe's error lines.
No shared material; hypothesis drives the inputs (ZOO_FUZZ_EXAMPLES multiplies, ZOO_FUZZ_SEED sets the seed)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoo.exporters.base import write_sidecar
from fuzzing import fuzz
from zoo.core.errors import ZooError
from zoo.core.integrity import CORRUPT, MISMATCH, output_problem, sidecar_files, verify_artifact
from zoo.core.manifest import Artifact, FileEntry, Manifest, write_manifest
from zoo.core.meta import MAX_SIDE, ArtifactMeta, read_meta
from zoo.core.model import priors as P
from zoo.core.model.processing import decode
from zoo.pipeline.probe import probe_error




def meta(**kw) -> ArtifactMeta:
    d = dict(model_id="slim-320", arch="slim", input_size=(320, 240), labels=("BACKGROUND", "face"), head="raw",
             checkpoint_sha256="0" * 64, target="ncnn")
    d.update(kw)
    return ArtifactMeta(**d)


def artifact(tmp: Path, seed_: int = 0) -> Path:
    """A two-file artifact (``m.param`` + ``m.bin``) with its sidecar; returns the primary."""
    rng = np.random.default_rng(seed_)
    (tmp / "m.param").write_bytes(b"7767517\n" + rng.integers(32, 127, 3000, dtype=np.uint8).tobytes())
    (tmp / "m.bin").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    write_sidecar(tmp, Path("m.param"), meta(), [Path("m.param"), Path("m.bin")])
    return tmp / "m.param"


# --------------------------------------------------------------------------- metadata

def test_sidecar_keeps_the_metadata_keys_and_adds_file_hashes(tmp_path):
    primary = artifact(tmp_path)
    d = json.loads((tmp_path / "m.json").read_text())
    assert set(d) == set(meta().to_dict()) | {"files"}
    assert set(d["files"]) == {"m.param", "m.bin"}
    assert d["files"]["m.bin"]["bytes"] == 20000
    assert ArtifactMeta.from_dict(d) == meta()  # older readers: extra keys are ignored
    assert read_meta(primary) == meta()
    assert verify_artifact(primary) == "m.json"


def test_sidecar_of_a_folder_artifact_names_files_relative_to_it(tmp_path):
    (tmp_path / "sm" / "variables").mkdir(parents=True)
    for rel in ("sm/saved_model.pb", "sm/variables/variables.index"):
        (tmp_path / rel).write_bytes(b"x" * 10)
    files = sidecar_files(tmp_path, Path("sm/saved_model.pb"), [Path("sm/saved_model.pb"), Path("sm/variables/variables.index")])
    assert list(files) == ["saved_model.pb", "variables/variables.index"]


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
_FIELDS = list(ArtifactMeta.__dataclass_fields__)


@fuzz(60)
@given(edits=st.lists(st.tuples(st.sampled_from(_FIELDS + ["other"]), st.one_of(st.just("<del>"), _JSON)), min_size=1, max_size=4))
def test_any_metadata_is_usable_or_refused(tmp_path_factory, edits):
    """A sidecar whose fields hold anything: usable metadata, or one ZooError; never another exception."""
    tmp = tmp_path_factory.mktemp("meta")
    (tmp / "m.mnn").write_bytes(b"x")
    d = meta().to_dict()
    for k, v in edits:
        if v == "<del>":
            d.pop(k, None)
        else:
            d[k] = v
    (tmp / "m.json").write_text(json.dumps(d))
    try:
        m = read_meta(tmp / "m.mnn")
    except ZooError as e:
        assert "\n" not in str(e) and str(e)
        return
    w, h = m.input_size
    assert 1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE and m.prior_count == P.prior_count(w, h)
    assert m.head in ("raw", "decoded", "nms") and len(m.labels) >= 2 and m.std != 0


@fuzz(40)
@given(data=st.binary(max_size=300))
def test_any_sidecar_bytes_are_usable_or_refused(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("side")
    (tmp / "m.mnn").write_bytes(b"x")
    (tmp / "m.json").write_bytes(data)
    with pytest.raises(ZooError, match="m.json"):
        read_meta(tmp / "m.mnn")


@pytest.mark.parametrize("text", ["[" * 100000, '{"a": ' * 50000, "\ud800", "null", "1e999"])
def test_pathological_sidecars_are_refused(tmp_path, text):
    (tmp_path / "m.mnn").write_bytes(b"x")
    (tmp_path / "m.json").write_text(text, errors="surrogatepass")
    with pytest.raises(ZooError, match="m.json"):
        read_meta(tmp_path / "m.mnn")


def test_a_huge_input_size_is_refused_before_any_prior_is_made(tmp_path):
    (tmp_path / "m.mnn").write_bytes(b"x")
    d = meta().to_dict() | {"input_size": [10**9, 10**9]}
    d.pop("prior_count")
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(ZooError, match="out of range"):
        read_meta(tmp_path / "m.mnn")


def test_a_prior_count_that_disagrees_with_the_input_size_is_refused(tmp_path):
    (tmp_path / "m.mnn").write_bytes(b"x")
    (tmp_path / "m.json").write_text(json.dumps(meta().to_dict() | {"input_size": [640, 480]}))
    with pytest.raises(ZooError, match="prior_count 4420 does not match input_size 640x480"):
        read_meta(tmp_path / "m.mnn")


def test_a_folder_or_an_empty_onnx_file_is_refused(tmp_path):
    with pytest.raises(ZooError, match="not a file"):
        read_meta(tmp_path)
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ZooError, match="not an ONNX model"):
        read_meta(tmp_path / "e.onnx")


# --------------------------------------------------------------------------- integrity

@fuzz(40)
@given(which=st.sampled_from(["m.param", "m.bin"]), how=st.sampled_from(["flip", "truncate", "append"]),
       where=st.floats(0, 1), byte=st.integers(1, 255))
def test_any_change_to_a_file_is_refused_naming_it(tmp_path_factory, which, how, where, byte):
    tmp = tmp_path_factory.mktemp("art")
    primary = artifact(tmp)
    p = tmp / which
    data = bytearray(p.read_bytes())
    i = min(int(where * len(data)), len(data) - 1)
    if how == "flip":
        data[i] ^= byte
    elif how == "truncate":
        data = data[:i]
    else:
        data += bytes([byte])
    p.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=f"{which}: sha256 does not match its sidecar m.json .*--no-verify"):
        verify_artifact(primary)


def test_a_companion_of_another_model_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    primary = artifact(a, 0)
    artifact(b, 1)
    (a / "m.bin").write_bytes((b / "m.bin").read_bytes())
    with pytest.raises(ZooError, match="m.bin: sha256 does not match"):
        verify_artifact(primary)
    (a / "m.bin").unlink()
    with pytest.raises(ZooError, match="m.bin: missing"):
        verify_artifact(primary)


@pytest.mark.parametrize("files", [{}, [], {"../m.bin": {"sha256": "0" * 64, "bytes": 1}}, {"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}},
                                   {"m.param": {"sha256": "xyz", "bytes": 1}}, {"m.param": {"sha256": "0" * 64, "bytes": -1}},
                                   {"m.bin": {"sha256": "0" * 64, "bytes": 1}}])
def test_a_malformed_files_entry_is_refused(tmp_path, files):
    primary = artifact(tmp_path)
    d = json.loads((tmp_path / "m.json").read_text()) | {"files": files}
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(ZooError, match="m.json"):
        verify_artifact(primary)


def test_the_manifest_is_used_when_it_lists_the_artifact(tmp_path):
    art = tmp_path / "ncnn"
    art.mkdir()
    primary = artifact(art)
    files = [FileEntry.of(tmp_path, f"ncnn/{n}") for n in ("m.param", "m.bin", "m.json")]
    man = Manifest(artifacts=[Artifact("slim-320", "ncnn", "fp32", "raw", "NCHW", "ncnn/m.param", files, meta=meta().to_dict())],
                   model={"id": "slim-320"})
    write_manifest(tmp_path, man)
    assert verify_artifact(primary) == "manifest.json"
    (art / "m.json").write_text((art / "m.json").read_text().replace('"slim"', '"rfb"'))  # an edited sidecar
    with pytest.raises(ZooError, match=r"m.json: sha256 does not match .*manifest.json"):
        verify_artifact(primary)


def test_nothing_recorded_means_nothing_to_verify_but_an_unreadable_manifest_is_refused(tmp_path):
    (tmp_path / "m.mnn").write_bytes(b"x")
    (tmp_path / "m.json").write_text(meta().to_json())  # an older sidecar: no "files"
    assert verify_artifact(tmp_path / "m.mnn") == ""
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ZooError, match="cannot verify .*manifest.json"):
        verify_artifact(tmp_path / "m.mnn")


# --------------------------------------------------------------------------- outputs vs metadata

def _outputs(head: str, rng, n_priors_meta: ArtifactMeta):
    priors = P.generate_priors(*n_priors_meta.input_size)
    logits = rng.normal(0, 2, (1, priors.shape[0], 2)).astype(np.float32)
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    loc = rng.normal(0, 1, (1, priors.shape[0], 4)).astype(np.float32)
    corners = decode(loc, priors)
    return scores, loc, corners


@fuzz(20)
@given(s=st.integers(0, 2**31))
def test_outputs_of_the_declared_head_pass_and_of_the_other_head_do_not(s):
    rng = np.random.default_rng(s)
    scores, loc, corners = _outputs("raw", rng, meta())
    raw, dec = meta(head="raw"), meta(head="decoded")
    assert output_problem({"scores": scores, "boxes": corners, "locations": loc}, raw) is None
    assert output_problem({"scores": scores, "boxes": corners}, dec) is None
    # a decoded file read as raw: its corners are taken for offsets
    assert output_problem({"scores": scores, "boxes": decode(corners, P.generate_priors(320, 240)), "locations": corners}, raw)[0] == MISMATCH
    # a raw file read as decoded: its offsets are taken for corners
    assert output_problem({"scores": scores, "boxes": loc}, dec)[0] == MISMATCH


def test_nan_and_unsoftmaxed_outputs_are_flagged():
    rng = np.random.default_rng(0)
    scores, loc, corners = _outputs("raw", rng, meta())
    bad = corners.copy()
    bad[0, 7, 1] = np.nan
    assert output_problem({"scores": scores, "boxes": bad}, meta(head="decoded"))[0] == CORRUPT
    assert output_problem({"scores": scores * 3, "boxes": corners}, meta(head="decoded"))[0] == MISMATCH
    assert output_problem({"detections": [np.full((2, 6), np.inf)]}, meta(head="nms"))[0] == CORRUPT


def test_without_the_head_check_only_corrupt_outputs_are_flagged():
    rng = np.random.default_rng(2)
    scores, loc, corners = _outputs("raw", rng, meta())
    as_raw = {"scores": scores, "boxes": decode(corners, P.generate_priors(320, 240)), "locations": corners}
    assert output_problem(as_raw, meta(head="raw"))[0] == MISMATCH
    assert output_problem(as_raw, meta(head="raw"), check_head=False) is None
    bad = corners.copy()
    bad[0, 3, 0] = np.inf
    assert output_problem({"scores": scores, "boxes": bad}, meta(head="decoded"), check_head=False)[0] == CORRUPT


@pytest.mark.parametrize("offset", [(150.0, 0, 0, 0), (0, 0, 80.0, 0), (0, 0, 0, -80.0)])
def test_a_few_absurd_boxes_mean_weights_that_do_not_fit(offset):
    """What ncnn gives for a .param with another model's .bin: mostly plausible boxes, a few absurd."""
    rng = np.random.default_rng(1)
    scores, loc, _ = _outputs("raw", rng, meta())
    loc[0, 100:130] = offset
    priors = P.generate_priors(320, 240)
    kind, what = output_problem({"scores": scores, "boxes": decode(loc, priors), "locations": loc}, meta(head="raw"))
    assert kind == CORRUPT and "companion file of another model" in what


# --------------------------------------------------------------------------- the probe's lines

@pytest.mark.parametrize("result,expected", [
    ({"ok": False, "error": "runtime crashed (SIGSEGV); last output: none"},
     "/a/slim.param + slim.bin: ncnn crashed opening it (SIGSEGV); the file is corrupt or not a ncnn model"),
    ({"ok": False, "error": "runtime crashed (SIGABRT); last output: x"}, "ncnn crashed opening it (SIGABRT)"),
    ({"ok": False, "error": "runtime timed out after 7 s (killed)"}, "ncnn hung opening it (killed after 7 s)"),
    ({"ok": False, "error": "runtime exited with code 3 without a result; last output: none"}, "ncnn exited (code 3) opening it"),
    ({"ok": False, "error": "its box output is ...", "problem": "mismatch"}, "/a/slim.param: its box output is ...; its metadata does not describe this file"),
    ({"ok": False, "error": "its outputs contain NaN/inf", "problem": "corrupt"}, "its outputs contain NaN/inf; the file is corrupt"),
    ({"ok": False, "error": "ncnn load_model failed (-1) for /a/slim.bin"}, "ncnn load_model failed (-1) for /a/slim.bin"),
    ({"ok": False, "error": "TypeError: bad\n  detail\n"}, "/a/slim.param + slim.bin: ncnn cannot run it: TypeError: bad | detail"),
])
def test_probe_error_lines(result, expected):
    line = probe_error(result, Path("/a/slim.param"), "ncnn", "ncnn", "/a/slim.param + slim.bin", 7.0)
    assert expected in line and "\n" not in line
