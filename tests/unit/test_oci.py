"""Issue 20, without a registry: references, credentials, and the refusal of hostile registry answers
(manifests, layer titles that are paths, blobs that are not their digest), property-based, plus a
hostile registry on loopback (a stdlib HTTP server in a thread) for the client's streaming checks."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz
from zoo.core.errors import ZooError
from zoo.core.manifest import Artifact, FileEntry, Manifest
from zoo.pipeline.oci import (
    OCI_MANIFEST,
    TITLE,
    BlobMismatch,
    Descriptor,
    OciManifest,
    Reference,
    Registry,
    credentials,
    parse_challenge,
    parse_manifest,
    parse_reference,
    safe_relpath,
    sha256_digest,
)
from zoo.pipeline.publish import CONFIG_MEDIA_TYPE, check_against_release, media_type, pull, select
from zoo.pipeline.verify import PULL_RECORD, left_out_paths, pull_record_text

D = "sha256:" + "a" * 64
HOSTILE_PATHS = ["../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "./a", "a/.", "a\\..\\b",
                 "C:\\x", "a\0b", "", ".", "..", "a/", "/", "~/x", "a\nb", " a", "\u2025/x", "a/..", ".hidden/../x"]


# --------------------------------------------------------------------------- references

def test_references_parse():
    r = parse_reference("oci://127.0.0.1:5000/ultraface/rfb-320:v1")
    assert r == Reference("127.0.0.1:5000", "ultraface/rfb-320", "v1", None) and r.ref == "v1"
    r = parse_reference(f"oci://registry.example/zoo@{D}")
    assert r.digest == D and r.tag is None and r.ref == D and str(r) == f"oci://registry.example/zoo@{D}"
    assert str(parse_reference("oci://h/a/b:1.0")) == "oci://h/a/b:1.0"


@pytest.mark.parametrize("text", [
    "http://h/r:t", "oci://h/r", "oci://h:99999/r:t", "oci://h/R:t", "oci:///r:t", "oci://h/r:-t",
    "oci://h/r@sha256:abc", "oci://h/r:t\n", "oci://h/../r:t", "oci://h/r:" + "t" * 129, "oci://-h/r:t",
    "oci://user@h/r:t", "oci://h/r@md5:" + "a" * 32, "oci://h", "",
])
def test_bad_references_are_one_clear_error(text):
    with pytest.raises(ZooError, match="oci://|port|tag|repository|sha256|host"):
        parse_reference(text)


@fuzz(150)
@given(st.text(max_size=80) | st.from_regex(r"oci://[a-z0-9.:\-\[\]]{0,20}/[a-z0-9/._:@\-]{0,40}", fullmatch=True))
def test_parse_reference_accepts_only_the_grammar(text):
    try:
        r = parse_reference(text)
    except ZooError:
        return
    assert text.startswith("oci://") and "\n" not in text and ".." not in r.repo
    assert str(r) == text  # nothing dropped or reinterpreted


# --------------------------------------------------------------------------- paths

@pytest.mark.parametrize("rel", HOSTILE_PATHS)
def test_hostile_titles_are_refused(rel):
    with pytest.raises(ZooError, match="refusing"):
        safe_relpath(rel, "layer 0 title")


@fuzz(400)
@given(st.lists(st.sampled_from(["..", ".", "", "/", "a", "b.onnx", "\\", "\0", "~", "é", "x y", ":", "-"]),
                max_size=8).map("".join) | st.text(max_size=40))
def test_an_accepted_title_stays_inside_any_folder(rel):
    try:
        safe_relpath(rel, "t")
    except ZooError:
        return
    root = Path("/nonexistent/root")
    joined = Path(os.path.normpath(root / rel))
    assert root in joined.parents
    assert not PurePosixPath(rel).is_absolute() and ".." not in PurePosixPath(rel).parts and "\\" not in rel


def test_release_paths_are_accepted():
    for rel in ("manifest.json", "onnx/rfb-320-decoded-fp32.onnx", "golden/images/grace_hopper.jpg",
                "mnn/rfb-320-raw-int8-weight.mnn", "cards/rfb-320.md", "ncnn/x.param"):
        assert safe_relpath(rel, "t") == rel


# --------------------------------------------------------------------------- manifests

def _oci(titles=("manifest.json", "onnx/m.onnx")) -> OciManifest:
    cfg = Descriptor(CONFIG_MEDIA_TYPE, D, 10)
    layers = tuple(Descriptor("application/vnd.ultraface.onnx", "sha256:" + hashlib.sha256(t.encode()).hexdigest(),
                              len(t), {TITLE: t}) for t in titles)
    return OciManifest(cfg, layers, {"vnd.ultraface.model": "rfb-320"})


def test_manifest_bytes_are_canonical_and_round_trip():
    m = _oci()
    b = m.to_bytes()
    assert b == _oci().to_bytes() and b"created" not in b and b" " not in b
    assert parse_manifest(b) == m
    assert json.loads(b)["mediaType"] == OCI_MANIFEST and json.loads(b)["schemaVersion"] == 2


@pytest.mark.parametrize("rel", HOSTILE_PATHS)
def test_a_manifest_with_a_hostile_title_is_refused(rel):
    d = json.loads(_oci().to_bytes())
    d["layers"][1]["annotations"][TITLE] = rel
    with pytest.raises(ZooError):
        parse_manifest(json.dumps(d).encode())


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(schemaVersion=1), lambda d: d.update(schemaVersion=True),
    lambda d: d.update(mediaType="application/vnd.oci.image.index.v1+json"), lambda d: d.update(layers=[]),
    lambda d: d.update(layers={}), lambda d: d.pop("config"), lambda d: d["config"].update(digest="sha256:xyz"),
    lambda d: d["config"].update(size=-1), lambda d: d["config"].update(size=True), lambda d: d["config"].update(size=1e3),
    lambda d: d["config"].update(size=1 << 40), lambda d: d["layers"][0].update(mediaType="not a type"),
    lambda d: d["layers"][0].update(annotations={TITLE: 3}), lambda d: d["layers"][0].update(annotations=[]),
    lambda d: d["layers"][1]["annotations"].update({TITLE: "manifest.json"}),  # two layers, one title
    lambda d: d["layers"][1].pop("annotations"),  # no title
    lambda d: d["layers"][0].update(digest="SHA256:" + "A" * 64),
])
def test_malformed_manifests_are_refused(mutate):
    d = json.loads(_oci().to_bytes())
    mutate(d)
    with pytest.raises(ZooError):
        parse_manifest(json.dumps(d).encode())


def test_huge_or_non_json_manifests_are_refused():
    for data in (b"\xff\xfe", b"[1, 2]", b"null", b"{" * 100_000, b" " * (5 << 20)):
        with pytest.raises(ZooError):
            parse_manifest(data)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4), max_leaves=20)


def _mutated(value, where):
    d = json.loads(_oci().to_bytes())
    node = d
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    return d


@fuzz(300)
@given(value=_json, where=st.sampled_from([("schemaVersion",), ("mediaType",), ("config",), ("config", "digest"),
                                           ("config", "size"), ("layers",), ("layers", 0), ("layers", 1, "annotations"),
                                           ("layers", 1, "annotations", TITLE), ("layers", 0, "size"), ("annotations",)]))
def test_any_mutation_is_parsed_safely_or_refused(value, where):
    d = _mutated(value, where)
    try:
        m = parse_manifest(json.dumps(d).encode())
    except ZooError:
        return
    for x in m.layers:  # accepted: every title is a safe path, every digest and size well-formed
        assert safe_relpath(x.title, "t") == x.title and x.digest.startswith("sha256:") and x.size >= 0


@fuzz(200)
@given(st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        parse_manifest(data)
    except ZooError:
        pass


# --------------------------------------------------------------------------- a manifest against its release

def _release() -> Manifest:
    files = [FileEntry("onnx/m.onnx", "1" * 64, 5), FileEntry("onnx/m.json", "2" * 64, 6)]
    mnn = [FileEntry("mnn/m.mnn", "3" * 64, 7)]
    arts = [Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/m.onnx", files),
            Artifact("rfb-320", "mnn", "int8", "raw", "NCHW", "mnn/m.mnn", mnn)]
    kit = [FileEntry("golden/images/a.jpg", "4" * 64, 8), FileEntry("golden/rfb-320/scores.npy", "5" * 64, 9),
           FileEntry("golden/slim-320/scores.npy", "7" * 64, 9), FileEntry("cards/rfb-320.md", "6" * 64, 10)]
    return Manifest(arts, release={"models": ["rfb-320"], "targets": ["onnx", "mnn"], "precisions": ["fp32", "int8"]},
                    models={"rfb-320": {"checkpoint_sha256": "c" * 64}}, files=kit)


def _layers_of(m: Manifest, cfg: Descriptor) -> OciManifest:
    layers = [Descriptor(CONFIG_MEDIA_TYPE, cfg.digest, cfg.size, {TITLE: "manifest.json"})]
    layers += [Descriptor(media_type(f.path), "sha256:" + f.sha256, f.bytes, {TITLE: f.path}) for f in m.all_files()]
    return OciManifest(cfg, tuple(layers))


def test_layers_must_be_exactly_the_release_files():
    m, cfg = _release(), Descriptor(CONFIG_MEDIA_TYPE, D, 100)
    oci = _layers_of(m, cfg)
    assert set(check_against_release(oci, m, cfg)) == {"manifest.json"} | {f.path for f in m.all_files()}
    extra = OciManifest(cfg, oci.layers + (Descriptor("text/plain", D, 1, {TITLE: "REPORT.md"}),))
    missing = OciManifest(cfg, oci.layers[:-1])
    swapped = OciManifest(cfg, (oci.layers[0], Descriptor("x/y", "sha256:" + "9" * 64, 5, {TITLE: "onnx/m.onnx"}))
                          + oci.layers[2:])
    resized = OciManifest(cfg, (oci.layers[0], Descriptor("x/y", "sha256:" + "1" * 64, 6, {TITLE: "onnx/m.onnx"}))
                          + oci.layers[2:])
    for bad, why in ((extra, "REPORT.md"), (missing, "no layer"), (swapped, "onnx/m.onnx"), (resized, "onnx/m.onnx")):
        with pytest.raises(BlobMismatch, match=why):
            check_against_release(bad, m, cfg)


def test_select_takes_an_apps_files_and_the_golden_kit_of_its_model():
    m = _release()
    arts, paths = select(m, ["mnn"], ["int8"])
    assert [a.target for a in arts] == ["mnn"]
    assert sorted(paths) == sorted(["manifest.json", "mnn/m.mnn", "golden/images/a.jpg", "golden/rfb-320/scores.npy"])
    assert len(select(m, None, None)[1]) == 1 + len(m.all_files())
    with pytest.raises(ZooError, match="this release has mnn, onnx"):
        select(m, ["tflite"], None)
    with pytest.raises(ZooError, match="this release has int8 for mnn"):
        select(m, ["mnn"], ["fp16"])


def test_media_types_per_format():
    assert media_type("mnn/x.mnn", "mnn") == "application/vnd.ultraface.mnn"
    assert media_type("onnx/x.onnx", "onnx") == "application/vnd.ultraface.onnx"
    assert media_type("ncnn/x.param", "ncnn") == "application/vnd.ultraface.ncnn.param"
    assert media_type("ncnn/x.bin", "ncnn") == "application/vnd.ultraface.ncnn.bin"
    assert media_type("tflite/x.tflite", "tflite") == "application/vnd.ultraface.tflite"
    assert media_type("caffe/x.caffemodel", "caffe") == "application/vnd.ultraface.caffe.caffemodel"
    assert media_type("caffe/x.prototxt", "caffe") == "application/vnd.ultraface.caffe.prototxt"
    assert media_type("openvino/x.xml", "openvino") == "application/vnd.ultraface.openvino.xml"
    assert media_type("openvino/x.bin", "openvino") == "application/vnd.ultraface.openvino.bin"
    assert media_type("mnn/x.json", "mnn") == "application/vnd.ultraface.meta+json"
    assert media_type("tfjs/x.model.json", "tfjs") == "application/vnd.ultraface.tfjs.model+json"
    assert media_type("tfjs/x.bin", "tfjs") == "application/vnd.ultraface.tfjs.bin"
    assert media_type("tfjs/x.json", "tfjs") == "application/vnd.ultraface.meta+json"
    assert media_type("web/ultraface.js") == "text/javascript"
    assert media_type("golden/images/a.jpg") == "application/vnd.ultraface.golden.image"
    assert media_type("golden/rfb-320/boxes.npy") == "application/vnd.ultraface.golden.npy"
    assert media_type("cards/rfb-320.md") == "application/vnd.ultraface.card+markdown"
    assert media_type("manifest.json") == CONFIG_MEDIA_TYPE


# --------------------------------------------------------------------------- the pull record

def test_pull_record_is_validated(tmp_path):
    m = _release()
    assert left_out_paths(tmp_path, m) == set()
    (tmp_path / PULL_RECORD).write_text(pull_record_text("oci://h/r:t", D, ["mnn"], None, ["onnx/m.onnx"]))
    assert left_out_paths(tmp_path, m) == {"onnx/m.onnx"}
    for bad in ("{", "[]", '{"left_out": "onnx/m.onnx"}', '{"left_out": [3]}', '{"left_out": ["../../etc/passwd"]}',
                '{"left_out": ["REPORT.md"]}'):
        (tmp_path / PULL_RECORD).write_text(bad)
        with pytest.raises(ZooError, match=PULL_RECORD):
            left_out_paths(tmp_path, m)


# --------------------------------------------------------------------------- credentials

def _docker_config(tmp_path, monkeypatch, auths):
    monkeypatch.delenv("ZOO_REGISTRY_USER", raising=False)
    monkeypatch.delenv("ZOO_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"auths": auths}))


def test_credentials_from_the_docker_config_and_the_environment(tmp_path, monkeypatch):
    b64 = base64.b64encode(b"alice:s3cr:et").decode()
    _docker_config(tmp_path, monkeypatch, {"https://reg.example:5000": {"auth": b64}, "other": {"auth": "x"}})
    assert credentials("reg.example:5000") == ("alice", "s3cr:et")
    assert credentials("nowhere") is None
    _docker_config(tmp_path, monkeypatch, {"reg.example": {"username": "bob", "password": "pw"}})
    assert credentials("reg.example") == ("bob", "pw")
    monkeypatch.setenv("ZOO_REGISTRY_USER", "carol")
    monkeypatch.setenv("ZOO_REGISTRY_PASSWORD", "pw2")
    assert credentials("reg.example") == ("carol", "pw2")  # the environment wins
    monkeypatch.delenv("ZOO_REGISTRY_PASSWORD")
    with pytest.raises(ZooError, match="both"):
        credentials("reg.example")


@pytest.mark.parametrize("auth", ["!!!", base64.b64encode(b"no-colon").decode(), base64.b64encode(b"\xff:x").decode()])
def test_a_bad_docker_config_entry_is_one_clear_error(tmp_path, monkeypatch, auth):
    _docker_config(tmp_path, monkeypatch, {"h": {"auth": auth}})
    with pytest.raises(ZooError, match="base64 of user:password"):
        credentials("h")


def test_unreadable_docker_config(tmp_path, monkeypatch):
    _docker_config(tmp_path, monkeypatch, {})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ZooError, match="Docker config"):
        credentials("h")


def test_challenges():
    assert parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a:pull"})
    assert parse_challenge('Basic realm="zoo"') == ("basic", {"realm": "zoo"})
    assert parse_challenge("") == ("", {})


# --------------------------------------------------------------------------- a hostile registry on loopback

class Hostile(BaseHTTPRequestHandler):
    routes: dict = {}

    def log_message(self, *a):
        pass

    def _answer(self, body_too=True):
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {}, b"{}"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body_too:
            self.wfile.write(body)

    def do_GET(self):
        self._answer()

    def do_HEAD(self):
        self._answer(False)


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    Hostile.routes = {"/v2/": (200, {}, b"{}")}
    try:
        yield f"127.0.0.1:{server.server_address[1]}", Hostile.routes
    finally:
        server.shutdown()
        server.server_close()


def _serve_release(routes, m: Manifest, blobs: dict[str, bytes], layers=None, config=None):
    config = config if config is not None else m.to_json().encode()
    cfg = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config))
    oci = layers or _layers_of(m, cfg)
    body = oci.to_bytes()
    routes["/v2/zoo/manifests/v1"] = (200, {"Content-Type": OCI_MANIFEST}, body)
    routes[f"/v2/zoo/blobs/{cfg.digest}"] = (200, {}, config)
    for digest, data in blobs.items():
        routes[f"/v2/zoo/blobs/{digest}"] = (200, {}, data)
    return sha256_digest(body)


def _real_release() -> tuple[Manifest, dict[str, bytes]]:
    data = {"onnx/m.onnx": b"onnx!", "golden/images/a.jpg": b"jpeg"}
    files = {p: FileEntry(p, hashlib.sha256(b).hexdigest(), len(b)) for p, b in data.items()}
    m = Manifest([Artifact("rfb-320", "onnx", "fp32", "decoded", "NCHW", "onnx/m.onnx", [files["onnx/m.onnx"]])],
                 release={"models": ["rfb-320"], "targets": ["onnx"], "precisions": ["fp32"]},
                 models={"rfb-320": {}}, files=[files["golden/images/a.jpg"]])
    return m, {"sha256:" + files[p].sha256: b for p, b in data.items()}


def test_pull_from_an_honest_loopback_server_writes_the_release(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    digest = _serve_release(routes, m, blobs)
    res = pull(f"oci://{host}/zoo:v1", tmp_path / "out", insecure=True)
    assert res["digest"] == digest and (tmp_path / "out" / "onnx" / "m.onnx").read_bytes() == b"onnx!"
    assert json.loads((tmp_path / "out" / PULL_RECORD).read_text())["left_out"] == []


def test_a_blob_longer_than_declared_is_refused_and_nothing_is_written(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    onnx = next(d for d, b in blobs.items() if b == b"onnx!")
    _serve_release(routes, m, {**blobs, onnx: b"onnx!" + b"x" * 10_000})
    with pytest.raises(BlobMismatch, match="onnx/m.onnx.*fails its digest"):
        pull(f"oci://{host}/zoo:v1", tmp_path / "out", insecure=True)
    assert list(tmp_path.iterdir()) == []  # no --out, no temporary folder left beside it


def test_a_traversal_title_from_the_registry_is_refused(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    config = m.to_json().encode()
    cfg = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config))
    d = json.loads(_layers_of(m, cfg).to_bytes())
    d["layers"][1]["annotations"][TITLE] = "../../escaped"
    routes["/v2/zoo/manifests/v1"] = (200, {}, json.dumps(d).encode())
    with pytest.raises(ZooError, match="refusing"):
        pull(f"oci://{host}/zoo:v1", tmp_path / "out", insecure=True)
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "escaped").exists()


def test_a_manifest_path_leaving_the_folder_is_refused(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    m.files[0] = FileEntry("../escaped.jpg", m.files[0].sha256, m.files[0].bytes)
    _serve_release(routes, m, blobs)
    with pytest.raises(ZooError, match="escaped.jpg"):
        pull(f"oci://{host}/zoo:v1", tmp_path / "out", insecure=True)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_asked_by_digest_must_hash_to_it(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    _serve_release(routes, m, blobs)
    routes[f"/v2/zoo/manifests/{D}"] = routes["/v2/zoo/manifests/v1"]
    with pytest.raises(BlobMismatch, match="not the manifest asked for"):
        pull(f"oci://{host}/zoo@{D}", tmp_path / "out", insecure=True)


def test_a_non_release_artifact_is_refused(hostile, tmp_path):
    host, routes = hostile
    m, blobs = _real_release()
    _serve_release(routes, m, blobs)
    d = json.loads(routes["/v2/zoo/manifests/v1"][2])
    d["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    routes["/v2/zoo/manifests/v1"] = (200, {}, json.dumps(d).encode())
    with pytest.raises(ZooError, match="not a zoo release"):
        pull(f"oci://{host}/zoo:v1", tmp_path / "out", insecure=True)


def test_pull_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ZooError, match="not an empty folder"):
        pull("oci://127.0.0.1:9/zoo:v1", tmp_path / "out", insecure=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_credentials_are_not_sent_to_another_host_on_redirect(hostile, monkeypatch, tmp_path):
    """A redirect to another host (storage) keeps the request, drops the Authorization header."""
    host, routes = hostile
    seen = {}

    class Other(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen["auth"] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"onnx!")

    other = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ZOO_REGISTRY_USER", "u")
        monkeypatch.setenv("ZOO_REGISTRY_PASSWORD", "p")
        digest = sha256_digest(b"onnx!")
        routes[f"/v2/zoo/blobs/{digest}"] = (307, {"Location": f"http://localhost:{other.server_address[1]}/blob"}, b"")
        reg = Registry(parse_reference(f"oci://{host}/zoo:v1"), insecure=True)
        reg._authorization = "Basic dTpw"
        reg.fetch_blob(Descriptor("x/y", digest, 5, {TITLE: "m.onnx"}), tmp_path / "b")
        assert (tmp_path / "b").read_bytes() == b"onnx!" and seen["auth"] is None
    finally:
        other.shutdown()
        other.server_close()
