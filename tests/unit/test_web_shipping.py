"""web/ultraface.js ships with the web artifacts: an export or release folder holding a tfjs file, or an ONNX file
with a decoded or raw head, gets the package's module byte for byte, listed (hashed) in its manifest's files;
other folders get none and keep their manifest's shape. (Written by the real manifest writers; the module's
behaviour is tests/web's.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.core.manifest import Artifact, Manifest, file_entries, read_manifest, verify_files
from zoo.pipeline.build import write_export_manifest
from zoo.pipeline.publish import media_type, select
from zoo.pipeline.web import MODULE, SOURCE, write_module

MODEL = {"id": "rfb-320", "checkpoint_sha256": "0" * 64}


def art(root: Path, target: str, precision: str = "fp32", head: str = "decoded", model: str = "rfb-320") -> Artifact:
    rel = f"{target}/{model}-{head}-{precision}.x"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(f"{target} {precision} {head}".encode())
    return Artifact(model, target, precision, head, "NCHW", rel, file_entries(root, [rel]))


@pytest.mark.parametrize("target,head", [("tfjs", "decoded"), ("tfjs", "raw"), ("onnx", "decoded"), ("onnx", "raw")])
def test_an_export_with_a_web_artifact_ships_the_module(tmp_path, target, head):
    write_export_manifest(tmp_path, MODEL, [art(tmp_path, "mnn"), art(tmp_path, target, head=head)], [], [], None)
    text = (tmp_path / "manifest.json").read_text()
    m = read_manifest(tmp_path)
    assert [f.path for f in m.files] == [MODULE] and list(json.loads(text))[-1] == "files"
    assert (tmp_path / MODULE).read_bytes() == SOURCE.read_bytes()
    assert not verify_files(tmp_path, m.all_files())
    write_export_manifest(tmp_path, MODEL, [], [], [], read_manifest(tmp_path))  # a run that adds nothing
    assert (tmp_path / "manifest.json").read_text() == text  # byte-reproducible, kept with its artifacts
    (tmp_path / MODULE).write_bytes(SOURCE.read_bytes().replace(b"0.7", b"0.5", 1))  # a changed threshold
    assert verify_files(tmp_path, m.files) == [f"{MODULE}: sha256 mismatch"]


@pytest.mark.parametrize("target,head", [("mnn", "raw"), ("onnx", "nms"), ("tflite", "decoded")])
def test_an_export_without_a_web_artifact_ships_nothing(tmp_path, target, head):
    write_export_manifest(tmp_path, MODEL, [art(tmp_path, target, head=head)], [], [], None)
    d = json.loads((tmp_path / "manifest.json").read_text())
    assert list(d) == ["schema_version", "zoo_version", "model", "artifacts", "failed", "skipped"]
    assert not (tmp_path / "web").exists()


def test_a_link_or_stale_copy_in_its_place_is_replaced_by_the_file(tmp_path):
    outside = tmp_path / "outside.js"
    outside.write_bytes(SOURCE.read_bytes())
    out = tmp_path / "out"
    (out / "web").mkdir(parents=True)
    (out / MODULE).symlink_to(outside)
    assert write_module(out, [art(out, "tfjs")]) == [MODULE]
    assert not (out / MODULE).is_symlink() and (out / MODULE).read_bytes() == SOURCE.read_bytes()


def test_a_release_lists_it_and_a_pull_takes_it_with_a_web_artifact(tmp_path):
    arts = [art(tmp_path, "mnn"), art(tmp_path, "onnx", "int8", "raw"), art(tmp_path, "tfjs", "uint8-weight")]
    rels = write_module(tmp_path, arts)
    m = Manifest(artifacts=arts, release={"models": ["rfb-320"], "targets": ["mnn", "onnx", "tfjs"],
                                          "precisions": ["fp32", "int8"]}, files=file_entries(tmp_path, rels))
    assert MODULE in select(m, ["tfjs"], None)[1] and MODULE in select(m, ["onnx"], ["int8"])[1]
    assert MODULE not in select(m, ["mnn"], None)[1]
    assert media_type(MODULE) == "text/javascript"
