"""Issue 20: `zoo publish` / `zoo pull` against a real OCI registry (Debian's docker-registry, the CNCF
distribution registry) started on 127.0.0.1 by a fixture, with the rfb-320 release (every target, fp32
and int8) built once per session. Without the registry binary these tests skip, except under CI
(CI=true), where they fail."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import assert_clean_error, zoo
from oci_registry import BINARY, INSTALL_HINT, blob_path, free_port, registry_binary, run_registry

from zoo.core.fsutil import sha256_file
from zoo.core.upstream import PINNED_COMMIT
from zoo.pipeline.oci import ENV_PASSWORD, ENV_USER, OCI_MANIFEST, OciManifest, Registry, parse_manifest, parse_reference

#: user zoo, password zoo-secret (bcrypt, cost 4: the registry checks it on every request)
HTPASSWD = "zoo:$2b$04$AVVhZdTn/lwWd5B3jOYbbe.HD3VJarGsj.8MOLyK9CQePARi9cFaK"
#: rfb-320 MNN full int8 is withheld from the default matrix (zoo.core.withheld): its weight-only flavour
MNN_INT8 = "mnn/rfb-320-raw-int8-weight.mnn"


def _need_registry() -> None:
    if registry_binary() is None:
        msg = f"no {BINARY} binary: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A registry on loopback (session-scoped and requested first: a missing binary skips before the release build).
    The tests' own Docker config folder (empty) and no credentials in the environment."""
    _need_registry()
    mp = pytest.MonkeyPatch()
    mp.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))
    mp.delenv(ENV_USER, raising=False)
    mp.delenv(ENV_PASSWORD, raising=False)
    try:
        with run_registry(tmp_path_factory.mktemp("registry")) as (host, storage):
            yield SimpleNamespace(host=host, storage=storage)
    finally:
        mp.undo()


def _json(cp) -> dict:
    return json.loads(cp.stdout)


def _raw_manifest(host: str, repo: str, ref: str) -> bytes:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


@pytest.fixture(scope="session")
def published(registry, rfb_release):
    """The release pushed twice to the same tag (the second push finds every blob there)."""
    ref = f"oci://{registry.host}/ultraface/rfb-320:v1"
    t0 = time.monotonic()
    first = _json(zoo("publish", rfb_release, "--to", ref, "--insecure", "--json", check=0))
    first_s = time.monotonic() - t0
    second = _json(zoo("publish", rfb_release, "--to", ref, "--insecure", "--json", check=0))
    return SimpleNamespace(ref=ref, first=first, second=second, first_s=first_s, host=registry.host,
                           storage=registry.storage, release=rfb_release)


def _release_files(folder: Path) -> dict[str, str]:
    m = json.loads((folder / "manifest.json").read_text())
    files = {f["path"]: f["sha256"] for a in m["artifacts"] for f in a["files"]}
    files.update({f["path"]: f["sha256"] for f in m["files"]})
    return files


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_publish_pushes_the_manifest_and_its_files_only(published):
    rel, first = published.release, published.first
    listed = _release_files(rel)
    titles = [x["title"] for x in first["layers"]]
    assert sorted(titles) == sorted(["manifest.json", *listed])  # REPORT.md (in the folder) is not sent
    assert (rel / "REPORT.md").is_file() and "REPORT.md" not in titles
    assert (rel / "REPORT.html").is_file() and "REPORT.html" not in titles
    assert first["blobs_pushed"] == len(set(x["digest"] for x in first["layers"])) and first["previous_digest"] is None
    raw = _raw_manifest(published.host, "ultraface/rfb-320", "v1")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == first["digest"]
    oci = parse_manifest(raw)
    assert oci.config.digest == "sha256:" + sha256_file(rel / "manifest.json")
    assert oci.config.media_type == "application/vnd.ultraface.manifest.v1+json"
    types = {x.title: x.media_type for x in oci.layers}
    assert types[MNN_INT8] == "application/vnd.ultraface.mnn"
    assert types["onnx/rfb-320-decoded-fp32.onnx"] == "application/vnd.ultraface.onnx"
    assert types["ncnn/rfb-320-raw-int8.param"] == "application/vnd.ultraface.ncnn.param"
    assert types["ncnn/rfb-320-raw-int8.bin"] == "application/vnd.ultraface.ncnn.bin"
    assert types["tflite/rfb-320-raw-int8.tflite"] == "application/vnd.ultraface.tflite"
    assert types["caffe/rfb-320-raw-fp32.caffemodel"] == "application/vnd.ultraface.caffe.caffemodel"
    assert types["golden/rfb-320/scores.npy"] == "application/vnd.ultraface.golden.npy"
    assert types["cards/rfb-320.md"] == "application/vnd.ultraface.card+markdown"
    m = json.loads((rel / "manifest.json").read_text())
    a = oci.annotations
    assert a["vnd.ultraface.model"] == "rfb-320"
    assert a["vnd.ultraface.checkpoint.sha256"] == m["models"]["rfb-320"]["checkpoint_sha256"]
    assert a["org.opencontainers.image.licenses"] == "MIT" and a["org.opencontainers.image.revision"] == PINNED_COMMIT
    assert a["org.opencontainers.image.version"] == m["zoo_version"]
    assert b"created" not in raw  # no time anywhere: the digest is the release's


def test_the_same_release_gives_the_same_digest(published, tmp_path):
    first, second = published.first, published.second
    assert second["digest"] == first["digest"] and second["previous_digest"] == first["digest"]
    assert second["blobs_pushed"] == 0 and second["bytes_sent"] == 0
    # --dry-run contacts no registry (nothing listens on this port) and names the same digest
    dead = f"oci://127.0.0.1:{free_port()}/ultraface/rfb-320:v1"
    cp = zoo("publish", published.release, "--to", dead, "--insecure", "--dry-run", check=0)
    assert f"digest {first['digest']}" in cp.stdout and f"would push {len(first['layers'])} layers" in cp.stdout


def test_pull_into_an_empty_folder_verifies(published, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    cp = zoo("pull", published.ref, "--out", out, "--insecure", check=0)
    n = len(json.loads((published.release / "manifest.json").read_text())["artifacts"])
    assert n == 9  # 11 flavours, rfb-320 onnx/int8 and mnn/int8 withheld (zoo.core.withheld)
    assert cp.stdout.count("PASS  rfb-320 ") == n and "FAIL" not in cp.stdout and "partial" not in cp.stdout
    listed = _release_files(published.release)
    assert _tree(out) == {"manifest.json", "pull.json", *listed}
    assert all(sha256_file(out / p) == sha for p, sha in listed.items())
    assert (out / "manifest.json").read_bytes() == (published.release / "manifest.json").read_bytes()
    rec = json.loads((out / "pull.json").read_text())
    assert rec["digest"] == published.first["digest"] and rec["left_out"] == [] and rec["targets"] is None


def test_pull_of_one_target_gets_only_its_files(published, tmp_path):
    by_digest = published.ref.replace(":v1", "@" + published.first["digest"])
    out = tmp_path / "app"
    cp = zoo("pull", by_digest, "--out", out, "--insecure", "--target", "mnn", "--precision", "int8-weight", check=0)
    golden = {p for p in _release_files(published.release) if p.startswith("golden/")}
    assert _tree(out) == {"manifest.json", "pull.json", MNN_INT8, "mnn/rfb-320-raw-int8-weight.json", *golden}
    assert [l for l in cp.stdout.splitlines() if l.startswith(("PASS", "FAIL"))] == \
        [next(l for l in cp.stdout.splitlines() if l.startswith("PASS  rfb-320 mnn/int8-weight/raw"))]
    assert "partial pull (pull.json): left out 8 artifact(s)" in cp.stdout and "cards/rfb-320.md" in cp.stdout
    rec = json.loads((out / "pull.json").read_text())
    assert rec["targets"] == ["mnn"] and rec["precisions"] == ["int8-weight"] and MNN_INT8 not in rec["left_out"]
    # `zoo verify` alone says the same; a partial folder is never published
    cp = zoo("verify", out, check=0)
    assert "left out 8 artifact(s)" in cp.stdout
    assert_clean_error(zoo("publish", out, "--to", published.ref.replace(":v1", ":partial"), "--insecure"),
                       "partial pull")
    # the record excuses only what it names: a pulled file deleted fails verify
    (out / "mnn" / "rfb-320-raw-int8-weight.json").unlink()
    assert_clean_error(zoo("verify", out), "mnn/rfb-320-raw-int8-weight.json", "missing", code=2)
    # a partial pull is explicit: without its record, the absent files fail verify too
    (out / "pull.json").unlink()
    assert_clean_error(zoo("verify", out), "missing", code=2)


def test_a_blob_altered_in_the_registry_is_caught_on_pull(published, tmp_path):
    digest = "sha256:" + sha256_file(published.release / MNN_INT8)
    blob = blob_path(published.storage, digest)
    original = blob.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    try:
        blob.write_bytes(bytes(data))
        out = tmp_path / "pulled"
        cp = zoo("pull", published.ref, "--out", out, "--insecure", "--target", "mnn")
        assert_clean_error(cp, MNN_INT8, "digest", code=2)
        assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written, no temporary left
    finally:
        blob.write_bytes(original)


def test_a_tag_holding_another_digest_is_refused_unless_forced(published):
    ref = published.ref.replace(":v1", ":taken")
    reg = Registry(parse_reference(ref), insecure=True)
    raw = _raw_manifest(published.host, "ultraface/rfb-320", "v1")
    oci = parse_manifest(raw)
    other = OciManifest(oci.config, oci.layers, {**oci.annotations, "vnd.ultraface.note": "another artifact"})
    other_digest = reg.put_manifest("taken", other.to_bytes())
    cp = zoo("publish", published.release, "--to", ref, "--insecure")
    assert_clean_error(cp, "exists with a different digest", other_digest, "--force")
    assert "verifying" not in cp.stderr, cp.stderr  # refused before verifying anything (verify says each artifact)
    assert reg.manifest_digest("taken") == other_digest
    res = _json(zoo("publish", published.release, "--to", ref, "--insecure", "--force", "--json", check=0))
    assert res["digest"] == published.first["digest"] and res["previous_digest"] == other_digest
    assert reg.manifest_digest("taken") == published.first["digest"]


def test_an_unreachable_registry_is_one_line(rfb_release, tmp_path, registry):
    dead = f"oci://127.0.0.1:{free_port()}/ultraface/rfb-320:v1"
    assert_clean_error(zoo("publish", rfb_release, "--to", dead, "--insecure"), "unreachable")
    assert_clean_error(zoo("pull", dead, "--out", tmp_path / "x", "--insecure"), "unreachable")
    assert not (tmp_path / "x").exists()
    assert_clean_error(zoo("publish", rfb_release, "--to", "http://127.0.0.1/x:y"), "oci://")


def test_credentials_come_from_the_docker_config_or_the_environment(published, tmp_path):
    """A second registry on the same storage (it holds the release), asking for Basic credentials."""
    with run_registry(tmp_path / "auth-registry", htpasswd=HTPASSWD, storage=published.storage) as (host, _):
        ref = f"oci://{host}/ultraface/rfb-320:v1"
        assert_clean_error(zoo("pull", ref, "--out", tmp_path / "anon", "--insecure"), "authentication refused")
        wrong = {ENV_USER: "zoo", ENV_PASSWORD: "wrong"}
        assert_clean_error(zoo("publish", published.release, "--to", ref, "--insecure", env=wrong), "authentication refused")
        assert not (tmp_path / "anon").exists()
        cfg = tmp_path / "docker"
        cfg.mkdir()
        auth = base64.b64encode(b"zoo:zoo-secret").decode()
        (cfg / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        cp = zoo("pull", ref, "--out", tmp_path / "app", "--insecure", "--target", "onnx", "--precision", "fp32",
                 "--json", env={"DOCKER_CONFIG": str(cfg)}, check=0)
        assert _json(cp)["pull"]["digest"] == published.first["digest"] and _json(cp)["verify"]["passed"]
        # a push with the environment's credentials (the client of `zoo publish`: blob upload and manifest)
        os.environ[ENV_USER], os.environ[ENV_PASSWORD] = "zoo", "zoo-secret"
        try:
            reg = Registry(parse_reference(ref.replace(":v1", ":auth")), insecure=True)
            reg.push_blob("sha256:" + hashlib.sha256(b"x").hexdigest(), b"x")
            raw = _raw_manifest(published.host, "ultraface/rfb-320", "v1")
            assert reg.put_manifest("auth", raw) == published.first["digest"]
        finally:
            del os.environ[ENV_USER], os.environ[ENV_PASSWORD]


def test_a_release_that_fails_verify_is_not_published(registry, rfb_release, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(rfb_release, copy)
    victim = copy / "golden" / "rfb-320" / "detections.json"  # the golden kit: every artifact fails, no runtime runs
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    ref = f"oci://{registry.host}/ultraface/broken:v1"
    assert_clean_error(zoo("publish", copy, "--to", ref, "--insecure"), "does not verify", "detections.json",
                       "nothing was published", code=2)
    assert Registry(parse_reference(ref), insecure=True).manifest_digest("v1") is None
