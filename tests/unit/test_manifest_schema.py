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
