"""Issue 40: the manifest reader field by field (what the mutation run of zoo/core/manifest.py found
unchecked): each malformed field is refused with the one line naming the manifest, the entry and the field;
what a field may be (a size of 0, an 80-character min_runtime, a failure with no error text) is accepted;
defaults (the export's model id), the round trip of every optional key, the manifest's order, and the
messages of reading, resuming and file checks."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from zoo.core import manifest as M
from zoo.core.errors import ZooError
from zoo.core.manifest import (MANIFEST, SCHEMA_VERSION, Artifact, ArtifactKey, Failure, FileEntry, Manifest,
                               existing_manifest, file_problem, read_manifest, sort_key)

SHA = "ab" * 32
W = "M"  # the `where` every message starts with


def _export() -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "zoo_version": "1.2.3",
        "model": {"id": "rfb-320", "arch": "RFB"},
        "artifacts": [{
            "model": "rfb-320", "target": "onnx", "precision": "int8", "head": "raw", "dynamic": True,
            "min_runtime": "onnxruntime==1.17.3", "layout": "NCHW", "primary": "onnx/a.onnx",
            "files": [{"path": "onnx/a.onnx", "sha256": SHA, "bytes": 0}, {"path": "onnx/a.json", "sha256": SHA, "bytes": 7}],
            "tools": {"onnx": "1.0"}, "parity": {"passed": True}, "meta": {"k": 1}, "lineage": {"l": 2},
            "inputs_sha256": SHA,
        }],
        "failed": [{"model": "rfb-320", "target": "mnn", "precision": "int8", "head": "decoded", "dynamic": True,
                    "min_runtime": "mnn==3.0.0", "error": "converter crashed"}],
        "skipped": [{"target": "caffe", "why": "no dynamic"}],
        "files": [{"path": "web/ultraface.js", "sha256": SHA, "bytes": 3}],
    }


def _refused(d: dict, message: str) -> None:
    with pytest.raises(ZooError) as e:
        Manifest.from_dict(d, W)
    assert str(e.value) == message


def test_every_optional_key_survives_the_round_trip_in_order():
    d = _export()
    m = Manifest.from_dict(copy.deepcopy(d), W)
    assert json.dumps(m.to_dict()) == json.dumps(d)  # key order included: manifests are byte-reproducible
    a, f = m.artifacts[0], m.failed[0]
    assert (a.dynamic, a.min_runtime, a.inputs_sha256, a.tools, a.meta, a.lineage) == \
        (True, "onnxruntime==1.17.3", SHA, {"onnx": "1.0"}, {"k": 1}, {"l": 2})
    assert f == Failure("rfb-320", "mnn", "int8", "decoded", "converter crashed", True, "mnn==3.0.0")
    assert f.to_dict() == d["failed"][0] and list(f.to_dict()) == list(d["failed"][0])
    plain = Failure("rfb-320", "mnn", "fp32", "raw", "")
    assert plain.to_dict() == {"model": "rfb-320", "target": "mnn", "precision": "fp32", "head": "raw", "error": ""}


def test_defaults_the_export_model_and_the_failure_text():
    d = _export()
    del d["artifacts"][0]["model"], d["failed"][0]["model"], d["failed"][0]["error"]
    del d["failed"][0]["dynamic"], d["failed"][0]["min_runtime"]
    m = Manifest.from_dict(d, W)
    assert m.artifacts[0].model == "rfb-320" and m.failed[0].model == "rfb-320"  # the export's model id
    assert m.failed[0].error == "" and m.failed[0].dynamic is False and m.failed[0].min_runtime == ""
    d = _export()
    d["failed"][0]["model"] = "slim-320"  # a failure naming its own model keeps it
    assert Manifest.from_dict(d, W).failed[0].model == "slim-320"
    entry = {k: v for k, v in _export()["artifacts"][0].items() if k != "model"}
    assert Artifact.from_dict(entry, W).model == ""  # no manifest around it: no default model
    assert Failure.from_dict({"target": "t", "precision": "p", "head": "h"}, W).model == ""


@pytest.mark.parametrize("cls", [Artifact, Failure])
def test_an_entry_that_is_not_an_object_is_refused(cls):
    with pytest.raises(ZooError) as e:
        cls.from_dict(["not", "an", "object"], W)
    assert str(e.value) == "M: 'model' must be str"


def _art(**change) -> dict:
    d = _export()
    for k, v in change.items():
        if v is None:
            del d["artifacts"][0][k]
        else:
            d["artifacts"][0][k] = v
    return d


@pytest.mark.parametrize("change,message", [
    ({"model": 3}, "M: artifact 0: 'model' must be str"),
    ({"files": None}, "M: artifact 0: missing key 'files'"),
    ({"primary": None}, "M: artifact 0: missing key 'primary'"),
    ({"primary": "onnx/b.onnx"}, "M: artifact 0: primary 'onnx/b.onnx' is not among its files"),
    ({"target": None}, "M: artifact 0: missing key 'target'"),
    ({"precision": None}, "M: artifact 0: missing key 'precision'"),
    ({"head": None}, "M: artifact 0: missing key 'head'"),
    ({"parity": []}, "M: artifact 0: 'parity' must be an object with a boolean 'passed'"),
    ({"parity": {"passed": "yes"}}, "M: artifact 0: 'parity' must be an object with a boolean 'passed'"),
    ({"tools": []}, "M: artifact 0: 'tools' must be an object"),
    ({"meta": "x"}, "M: artifact 0: 'meta' must be an object"),
    ({"lineage": 1}, "M: artifact 0: 'lineage' must be an object"),
    ({"inputs_sha256": 5}, "M: artifact 0: 'inputs_sha256' must be str"),
    ({"dynamic": "yes"}, "M: artifact 0: 'dynamic' must be true or false"),
    ({"min_runtime": "x" * 81}, "M: artifact 0: 'min_runtime' must be short text (NAME==VERSION)"),
])
def test_each_malformed_artifact_field_is_one_line_naming_it(change, message):
    _refused(_art(**change), message)


def _file(**change) -> dict:
    d = _export()
    f = d["artifacts"][0]["files"][0]
    for k, v in change.items():
        if v is None:
            del f[k]
        else:
            f[k] = v
    return d


@pytest.mark.parametrize("change,message", [
    ({"sha256": None}, "M: artifact 0, file 0: missing key 'sha256'"),
    ({"bytes": None}, "M: artifact 0, file 0: missing key 'bytes'"),
    ({"path": None}, "M: artifact 0, file 0: missing key 'path'"),
    ({"bytes": -1}, "M: artifact 0, file 0: negative size -1"),
    ({"bytes": True}, "M: artifact 0, file 0: 'bytes' must be int, got bool"),
    ({"sha256": "ab" * 32 + "a"}, f"M: artifact 0, file 0: sha256 {'ab' * 32 + 'a'!r} is not 64 hex digits"),
    ({"sha256": "X" * 64}, f"M: artifact 0, file 0: sha256 {'X' * 64!r} is not 64 hex digits"),
    ({"sha256": "AB" * 32}, f"M: artifact 0, file 0: sha256 {'AB' * 32!r} is not 64 hex digits"),
    ({"sha256": "g" * 100}, f"M: artifact 0, file 0: sha256 {'g' * 80!r} is not 64 hex digits"),
])
def test_each_malformed_file_entry_is_one_line_naming_it(change, message):
    _refused(_file(**change), message)


def _failed(**change) -> dict:
    d = _export()
    for k, v in change.items():
        if v is None:
            del d["failed"][0][k]
        else:
            d["failed"][0][k] = v
    return d


@pytest.mark.parametrize("change,message", [
    ({"model": 1}, "M: failed 0: 'model' must be str"),
    ({"target": None}, "M: failed 0: missing key 'target'"),
    ({"precision": None}, "M: failed 0: missing key 'precision'"),
    ({"head": None}, "M: failed 0: missing key 'head'"),
    ({"dynamic": 1}, "M: failed 0: 'dynamic' must be true or false"),
    ({"min_runtime": 3}, "M: failed 0: 'min_runtime' must be short text (NAME==VERSION)"),
])
def test_each_malformed_failure_field_is_one_line_naming_it(change, message):
    _refused(_failed(**change), message)


def test_the_edges_of_what_a_field_may_be():
    m = Manifest.from_dict(_art(min_runtime="x" * 80), W)
    assert m.artifacts[0].min_runtime == "x" * 80
    assert Manifest.from_dict(_file(bytes=0), W).artifacts[0].files[0].bytes == 0  # an empty file is a file
    d = _export()
    d["files"][0]["bytes"] = -3
    _refused(d, "M: file 0: negative size -3")


def test_the_manifest_order():
    order = ["onnx", "mnn", "tflite"]
    keys = [ArtifactKey("slim-320", "onnx", "fp32", "raw"), ArtifactKey("rfb-320", "zzz", "fp32", "raw"),
            ArtifactKey("rfb-320", "onnx", "bf16", "raw"), ArtifactKey("rfb-320", "onnx", "uint8-weight", "raw"),
            ArtifactKey("rfb-320", "onnx", "int8", "raw"), ArtifactKey("rfb-320", "onnx", "fp16", "raw"),
            ArtifactKey("rfb-320", "mnn", "fp32", "raw"), ArtifactKey("rfb-320", "onnx", "fp32", "raw", True),
            ArtifactKey("rfb-320", "onnx", "fp32", "raw")]
    got = sorted(keys, key=lambda k: sort_key(k, order))
    assert [str(k) for k in got] == [
        "rfb-320 onnx/fp32/raw", "rfb-320 onnx/fp32/raw/dynamic", "rfb-320 onnx/fp16/raw", "rfb-320 onnx/int8/raw",
        "rfb-320 onnx/uint8-weight/raw",  # uint8 weights are an int8 flavour
        "rfb-320 onnx/bf16/raw",  # an unknown precision after the known ones
        "rfb-320 mnn/fp32/raw",
        "rfb-320 zzz/fp32/raw",  # an unknown target after the registered ones
        "slim-320 onnx/fp32/raw"]
    m = Manifest(failed=[Failure("rfb-320", "tflite", "fp32", "raw", "x"), Failure("rfb-320", "mnn", "int8", "raw", "y"),
                         Failure("rfb-320", "mnn", "fp32", "raw", "z")],
                 files=[FileEntry("web/b.js", SHA, 1), FileEntry("cards/a.md", SHA, 1), FileEntry("golden/c.npz", SHA, 1)],
                 model={"id": "rfb-320"}).sorted(order)
    assert [f.error for f in m.failed] == ["z", "y", "x"]
    assert [f.path for f in m.files] == ["cards/a.md", "golden/c.npz", "web/b.js"]


def _write(folder: Path, d: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(d))
    return folder


def test_read_manifest_messages_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(ZooError) as e:
        read_manifest(tmp_path)
    assert str(e.value) == f"no {MANIFEST} in {tmp_path}: point at a folder written by `zoo export` or `zoo release`"
    folder = _write(tmp_path / "x", _art(model=3))
    with pytest.raises(ZooError) as e:
        read_manifest(folder)
    assert str(e.value) == f"{folder / MANIFEST}: artifact 0: 'model' must be str"
    d = _export()
    d["artifacts"][0]["files"][1]["path"] = "../outside.json"
    folder = _write(tmp_path / "y", d)
    with pytest.raises(ZooError) as e:
        read_manifest(folder)
    assert str(e.value) == (f"{folder / MANIFEST}: rfb-320 onnx/int8/raw/dynamic@onnxruntime1.17.3: path "
                            "'../outside.json' leaves its folder or is not normalized; refusing it")
    d = _export()
    d["files"][0]["path"] = "/etc/passwd"
    folder = _write(tmp_path / "z", d)
    with pytest.raises(ZooError) as e:
        read_manifest(folder / MANIFEST)  # the manifest file itself, not its folder
    assert str(e.value) == f"{folder / MANIFEST}: path '/etc/passwd' leaves its folder or is not normalized; refusing it"

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    good = _write(tmp_path / "good", _export())
    assert read_manifest(good / MANIFEST).artifacts[0].primary == "onnx/a.onnx"
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ZooError) as e:
        read_manifest(good)
    assert str(e.value) == f"cannot read {good / MANIFEST}: Permission denied"


def test_existing_manifest_resumes_or_says_why_not(tmp_path):
    assert existing_manifest(tmp_path) is None
    good = _write(tmp_path / "good", _export())
    assert existing_manifest(good).failed[0].error == "converter crashed"
    bad = _write(tmp_path / "bad", _art(head=None))
    with pytest.raises(ZooError) as e:
        existing_manifest(bad)
    assert str(e.value) == (f"{bad / MANIFEST}: artifact 0: missing key 'head'; the output folder's manifest cannot "
                            "be resumed from: remove it or choose another --out")


def test_artifact_file_and_an_unreadable_file(tmp_path, monkeypatch):
    a = Manifest.from_dict(_export(), W).artifacts[0]
    assert a.file("onnx/a.json") == FileEntry("onnx/a.json", SHA, 7) and a.file("onnx/none") is None
    (tmp_path / "f.bin").write_bytes(b"abc")

    def refuse(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(M, "sha256_file", refuse)
    assert file_problem(tmp_path, FileEntry("f.bin", SHA, 3)) == "f.bin: unreadable (Permission denied)"


def _release() -> dict:
    d = _export()
    del d["model"], d["skipped"]
    d["release"] = {"models": ["rfb-320"], "targets": ["onnx"], "precisions": ["int8"]}
    d["models"] = {"rfb-320": {"arch": "RFB"}}
    d = {k: d[k] for k in ("schema_version", "zoo_version", "release", "models", "artifacts", "failed", "files")}
    return d


def test_a_release_manifest_round_trips_and_keeps_its_sections():
    d = _release()
    m = Manifest.from_dict(copy.deepcopy(d), W)
    assert m.is_release and m.model is None and m.models == {"rfb-320": {"arch": "RFB"}}
    assert json.dumps(m.to_dict()) == json.dumps(d)
    e = Manifest.from_dict(_export(), W)
    assert not e.is_release and e.models == {} and e.model == {"id": "rfb-320", "arch": "RFB"} and e.release is None
    assert e.skipped == [{"target": "caffe", "why": "no dynamic"}] and e.zoo_version == "1.2.3" and e.schema_version == 1
    d = _release()
    del d["artifacts"][0]["model"], d["failed"][0]["model"]  # a release has no one model to default to
    m = Manifest.from_dict(d, W)
    assert m.artifacts[0].model == "" and m.failed[0].model == ""
    d = _export()
    del d["zoo_version"], d["skipped"], d["failed"], d["files"]
    m = Manifest.from_dict(d, W)
    assert (m.zoo_version, m.skipped, m.failed, m.files) == ("", [], [], [])
    d["zoo_version"] = 3
    assert Manifest.from_dict(d, W).zoo_version == "3"
    d = _release()
    del d["models"]
    assert Manifest.from_dict(d, W).models == {}


def _with(base: dict, **change) -> dict:
    d = copy.deepcopy(base)
    for k, v in change.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


def test_each_malformed_section_is_one_line_naming_it():
    for d, message in [
        (["x"], "M: not a manifest (expected a JSON object)"),
        (_with(_export(), schema_version=2), "M: schema_version 2 is not supported (this zoo reads 1)"),
        (_with(_export(), model=None), "M: neither a 'model' nor a 'release' section"),
        (_with(_export(), model={"arch": "RFB"}), "M: 'model' must be an object with an 'id'"),
        (_with(_export(), model="rfb-320"), "M: 'model' must be an object with an 'id'"),
        (_with(_release(), release={"models": [], "targets": [], "precisions": "int8"}),
         "M: 'release' must hold lists 'models', 'targets' and 'precisions'"),
        (_with(_release(), release=["rfb-320"]), "M: 'release' must hold lists 'models', 'targets' and 'precisions'"),
        (_with(_release(), models=["rfb-320"]), "M: 'models' must be an object"),
        (_with(_export(), artifacts=None), "M: missing key 'artifacts'"),
        (_with(_export(), failed=5), "M: 'failed' and 'files' must be lists"),
        (_with(_export(), failed={"x": 1}), "M: 'failed' and 'files' must be lists"),
        (_with(_export(), files=7), "M: 'failed' and 'files' must be lists"),
        (_with(_export(), skipped="caffe"), "M: 'skipped' must be a list"),
    ]:
        with pytest.raises(ZooError) as e:
            Manifest.from_dict(d, W)
        assert str(e.value) == message, d


def test_an_artifact_or_a_file_listed_twice_is_refused_by_name():
    d = _export()
    twin = copy.deepcopy(d["artifacts"][0])
    twin["files"] = [{"path": "onnx/b.onnx", "sha256": SHA, "bytes": 1}]
    twin["primary"] = "onnx/b.onnx"
    d["artifacts"].append(twin)
    _refused(d, "M: artifact rfb-320 onnx/int8/raw/dynamic@onnxruntime1.17.3 is listed twice")
    d["artifacts"][1]["precision"] = "fp32"  # another artifact now; then a file it shares with the first
    assert len(Manifest.from_dict(copy.deepcopy(d), W).artifacts) == 2
    d["artifacts"][1]["files"].append({"path": "onnx/a.json", "sha256": SHA, "bytes": 7})
    _refused(d, "M: file 'onnx/a.json' is listed twice")
    d = _export()
    d["files"].append({"path": "onnx/a.onnx", "sha256": SHA, "bytes": 0})  # a release file that is an artifact's
    _refused(d, "M: file 'onnx/a.onnx' is listed twice")
    d = _export()
    d["artifacts"][0]["files"].append({"path": "onnx/a.json", "sha256": SHA, "bytes": 7})
    _refused(d, "M: artifact 0: lists a file twice")


def test_confine_refuses_each_kind_of_path_with_its_line(tmp_path):
    from zoo.core.manifest import _req, base_precision, confine

    (tmp_path / "a").mkdir()
    assert confine(tmp_path, "a/b.onnx") == tmp_path / "a" / "b.onnx"
    for rel in ("../x", "a/../b", "./a", "a//b", "a\\b", "a\0b", "/etc/passwd"):
        with pytest.raises(ZooError) as e:
            confine(tmp_path, rel)
        assert str(e.value) == f"manifest: path {rel!r} leaves its folder or is not normalized; refusing it"
    for rel in (5, "", None):
        with pytest.raises(ZooError) as e:
            confine(tmp_path, rel, "M: k")
        assert str(e.value) == f"M: k: an entry has an empty or non-text path ({rel!r})"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ZooError) as e:
        confine(tmp_path, "loop")
    assert str(e.value).startswith("manifest: path 'loop' cannot be resolved (Symlink loop from ")
    (tmp_path / "out").symlink_to("/etc")
    with pytest.raises(ZooError) as e:
        confine(tmp_path, "out/passwd")
    assert str(e.value) == "manifest: path 'out/passwd' resolves outside its folder (a symlink?); refusing it"
    # the typed reader every entry goes through
    with pytest.raises(ZooError) as e:
        _req(["x"], "k", str, "W")
    assert str(e.value) == "W: expected an object, got list"
    with pytest.raises(ZooError) as e:
        _req({"k": "x"}, "k", (int, float), "W")
    assert str(e.value) == "W: 'k' must be int/float, got str"
    assert _req({"k": 2.5}, "k", (int, float), "W") == 2.5
    # the precision a flavour belongs to is its first part (uint8 storage: int8)
    assert [base_precision(f) for f in ("fp16", "int8-io", "int8-weight", "uint8-weight", "fp16-x-y")] == \
        ["fp16", "int8", "int8", "int8", "fp16"]


def test_the_artifact_named_twice_is_the_one_listed_twice():
    d = _export()
    other = copy.deepcopy(d["artifacts"][0])
    other["precision"], other["files"], other["primary"] = "fp16", [{"path": "onnx/c.onnx", "sha256": SHA, "bytes": 1}], "onnx/c.onnx"
    twin = copy.deepcopy(d["artifacts"][0])
    twin["files"], twin["primary"] = [{"path": "onnx/b.onnx", "sha256": SHA, "bytes": 1}], "onnx/b.onnx"
    d["artifacts"] = [other, d["artifacts"][0], twin]  # the first one listed is not the duplicate
    _refused(d, "M: artifact rfb-320 onnx/int8/raw/dynamic@onnxruntime1.17.3 is listed twice")


def test_an_artifact_without_its_optional_sections_takes_their_defaults():
    entry = {k: v for k, v in _export()["artifacts"][0].items() if k not in ("layout", "tools", "meta", "lineage")}
    a = Artifact.from_dict(entry, W)
    assert (a.layout, a.tools, a.meta, a.lineage) == ("NCHW", {}, {}, {})
    assert Artifact.from_dict(dict(entry, layout="NHWC"), W).layout == "NHWC"  # a layout written is kept


def test_a_release_keeps_no_stray_model_and_an_export_no_stray_models():
    d = _release()
    d["model"] = {"id": "slim-320"}  # a release's section wins: it has no one model
    m = Manifest.from_dict(d, W)
    assert m.is_release and m.model is None
    d = _export()
    d["models"] = {"slim-320": {"arch": "slim"}}  # only a release describes several models
    assert Manifest.from_dict(d, W).models == {}
