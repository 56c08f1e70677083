"""The typed manifest: exact JSON shape, schema validation, path confinement (property-based), file checks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.core.errors import ZooError
from zoo.core.manifest import (
    Artifact,
    FileEntry,
    Failure,
    Manifest,
    base_precision,
    confine,
    file_entries,
    read_manifest,
    sort_key,
    verify_files,
    write_manifest,
)

SHA = "0" * 64


def _export_manifest(root: Path) -> Manifest:
    (root / "onnx").mkdir(parents=True, exist_ok=True)
    (root / "onnx" / "m.onnx").write_bytes(b"model bytes")
    files = file_entries(root, ["onnx/m.onnx"])
    art = Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/m.onnx", files, {"onnx": "1"},
                   {"passed": True}, {"model_id": "rfb-320"}, {"checkpoint_sha256": SHA}, "ab" * 32)
    fail = Failure("rfb-320", "mnn", "int8", "raw", "converter crashed")
    return Manifest([art], [fail], model={"id": "rfb-320", "checkpoint_sha256": SHA})


def test_json_shape_and_key_order_are_the_public_interface(tmp_path):
    m = _export_manifest(tmp_path)
    d = m.to_dict()
    assert list(d) == ["schema_version", "zoo_version", "model", "artifacts", "failed", "skipped"]
    assert list(d["artifacts"][0]) == ["model", "target", "precision", "head", "layout", "primary", "files", "tools",
                                       "parity", "meta", "lineage", "inputs_sha256"]
    assert list(d["artifacts"][0]["files"][0]) == ["path", "sha256", "bytes"]
    assert list(d["failed"][0]) == ["model", "target", "precision", "head", "error"]
    write_manifest(tmp_path, m)
    text = (tmp_path / "manifest.json").read_text()
    assert text == json.dumps(d, indent=2) + "\n"
    again = read_manifest(tmp_path)
    assert again.to_json() == text  # read -> write is byte-identical
    rel = Manifest(release={"models": ["rfb-320"], "targets": ["onnx"], "precisions": ["fp32"]}, models={"rfb-320": {}},
                   files=[FileEntry("golden/a.npy", SHA, 1)])
    assert list(rel.to_dict()) == ["schema_version", "zoo_version", "release", "models", "artifacts", "failed", "files"]


def test_flavours_and_order():
    assert [base_precision(p) for p in ("fp32", "int8-io", "int8-weight", "fp16")] == ["fp32", "int8", "int8", "fp16"]
    order = ["onnx", "mnn"]
    keys = [Artifact(m, t, p, "raw", "NCHW", "x", []).key for m, t, p in
            [("b", "onnx", "fp32"), ("a", "mnn", "int8"), ("a", "onnx", "int8-io"), ("a", "onnx", "fp16"), ("a", "onnx", "int8")]]
    got = sorted(keys, key=lambda k: sort_key(k, order))
    assert [(k.model, k.target, k.precision) for k in got] == [
        ("a", "onnx", "fp16"), ("a", "onnx", "int8"), ("a", "onnx", "int8-io"), ("a", "mnn", "int8"), ("b", "onnx", "fp32")]


def test_file_verification_names_each_problem(tmp_path):
    m = _export_manifest(tmp_path)
    assert verify_files(tmp_path, m.all_files()) == []
    (tmp_path / "onnx" / "m.onnx").write_bytes(b"model bytez")
    assert verify_files(tmp_path, m.all_files()) == ["onnx/m.onnx: sha256 mismatch"]
    (tmp_path / "onnx" / "m.onnx").unlink()
    assert verify_files(tmp_path, m.all_files()) == ["onnx/m.onnx: missing"]


BAD_DOCS = [
    ("[]", "not a manifest"),
    ('{"schema_version": 2, "model": {"id": "x"}, "artifacts": []}', "schema_version 2"),
    ('{"schema_version": 1, "artifacts": []}', "neither a 'model' nor a 'release'"),
    ('{"schema_version": 1, "model": {"id": "x"}}', "missing key 'artifacts'"),
    ('{"schema_version": 1, "model": {"id": "x"}, "artifacts": [{"target": "onnx"}]}', "missing key"),
    ('{"schema_version": 1, "model": {"id": "x"}, "artifacts": [{"target": "onnx", "precision": "fp32", "head": "raw", '
     '"primary": "a", "files": [{"path": "a", "sha256": "' + SHA + '", "bytes": "12"}]}]}', "'bytes' must be int"),
    ('{"schema_version": 1, "model": {"id": "x"}, "artifacts": [{"target": "onnx", "precision": "fp32", "head": "raw", '
     '"primary": "b", "files": [{"path": "a", "sha256": "' + SHA + '", "bytes": 1}]}]}', "primary 'b' is not among its files"),
    ('{"schema_version": 1, "model": {"id": "x"}, "artifacts": [{"target": "onnx", "precision": "fp32", "head": "raw", '
     '"primary": "a", "files": [{"path": "a", "sha256": "xyz", "bytes": 1}]}]}', "not 64 hex digits"),
    ('{"schema_version": 1, "model": {"id": "x"}, "artifacts": [{"target": "onnx", "precision": "fp32", "head": "raw", '
     '"primary": "a", "files": [{"path": "a", "sha256": "' + SHA + '", "bytes": 1}, {"path": "a", "sha256": "' + SHA + '", "bytes": 1}]}]}',
     "lists a file twice"),
    ("{not json", "not valid JSON"),
]


@pytest.mark.parametrize("doc,needle", BAD_DOCS)
def test_malformed_manifests_are_refused_with_one_clear_message(tmp_path, doc, needle):
    (tmp_path / "manifest.json").write_text(doc)
    with pytest.raises(ZooError, match=None) as e:
        read_manifest(tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("rel", ["../secret/s.txt", "/etc/hostname", "a/../../b", "./a", "a//b", "a\\..\\b", ""])
def test_paths_that_leave_the_folder_are_refused(tmp_path, rel):
    with pytest.raises(ZooError, match="refusing it|empty"):
        confine(tmp_path, rel)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    root = tmp_path / "rel"
    root.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(ZooError, match="resolves outside"):
        confine(root, "link/secret")
    assert confine(root, "inside/file") == root / "inside" / "file"


@fuzz(300)
@given(parts=st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "c.txt", "\\", "~"]), min_size=1, max_size=6))
def test_confine_never_returns_a_path_outside(tmp_path, parts):
    rel = "/".join(parts)
    try:
        p = confine(tmp_path, rel)
    except ZooError:
        return
    assert tmp_path.resolve() in p.resolve().parents or p.resolve() == tmp_path.resolve()


@fuzz(200)
@given(data=st.data())
def test_any_byte_damage_to_a_manifest_is_a_clear_error_or_a_valid_manifest(tmp_path, data):
    m = _export_manifest(tmp_path)
    raw = bytearray(m.to_json().encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    (tmp_path / "manifest.json").write_bytes(bytes(raw[:cut]))
    try:
        got = read_manifest(tmp_path)
    except ZooError as e:
        assert str(e)
        return
    for f in got.all_files():  # whatever was accepted stays inside the folder
        confine(tmp_path, f.path)
