"""The pinned fetcher of the original repository's files, against a real loopback HTTP server.

A small made-up material set is laid out in tmp_path as the original repository
(its files at their `remote` paths) with a pinned list of its own, and served by
http.server on 127.0.0.1 (tests/unit/mirror.py); the server counts every request.
Nothing here needs ../shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror import Server, free_port
from zoo.core import upstream
from zoo.core.upstream import PinnedFile, fetch, load_list, render_list
from zoo.core.errors import ZooError

ROOT = Path(__file__).resolve().parents[2]

# local path in ../shared -> path in the repository (a space and nesting, as URLs must quote them)
LAYOUT = {
    "upstream/LICENSE": "LICENSE",
    "upstream/checkpoints/a.pth": "models/pretrained/a.pth",
    "upstream/reference/mnn/b.mnn": "MNN/model/version RFB/b.mnn",
    "images/1.jpg": "imgs/1.jpg",
    "images/2.jpg": "imgs/2.jpg",
    "widerface/ground_truth/c.mat": "widerface_evaluate/ground_truth/c.mat",
}


@dataclass
class Material:
    files: list[PinnedFile]
    www: Path  # the repository's layout, served
    list_path: Path
    data: dict[str, bytes]  # local path -> content


@pytest.fixture
def material(tmp_path) -> Material:
    www = tmp_path / "www"
    files, data = [], {}
    for i, (local, remote) in enumerate(LAYOUT.items()):
        content = hashlib.sha256(local.encode()).digest() * (50 + 700 * i)  # 1.6 kB .. 112 kB
        (www / remote).parent.mkdir(parents=True, exist_ok=True)
        (www / remote).write_bytes(content)
        files.append(PinnedFile(local, remote, hashlib.sha256(content).hexdigest(), len(content)))
        data[local] = content
    list_path = tmp_path / "list.toml"
    list_path.write_text(render_list(files, "made up for the tests"))
    return Material(files, www, list_path, data)


@pytest.fixture
def server(material):
    s = Server(material.www)
    yield s
    s.close()


def assert_complete(dest: Path, material: Material, only=None, parts=()):
    """The files (all, or ``only``) hold their content; no temporary file but ``parts`` is left."""
    for local in only if only is not None else material.data:
        assert (dest / local).read_bytes() == material.data[local], local
    assert sorted(dest.rglob("*.part")) == sorted(parts), "a temporary file was left behind"


def run_cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("ZOO_UPSTREAM_URL", "ZOO_SHARED")}
    e.update(env or {})
    e["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "zoo.core.upstream", *map(str, args)],
                          capture_output=True, text=True, env=e, timeout=60, **kw)


def assert_one_error_line(cp: subprocess.CompletedProcess, *needles: str):
    assert cp.returncode == 1, cp.stderr
    assert "Traceback" not in cp.stderr
    lines = [l for l in cp.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, cp.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------ fetching


def test_fetch_into_an_empty_folder_then_a_no_op(tmp_path, material, server):
    dest = tmp_path / "shared"
    events = []
    report = fetch(material.files, dest, server.url, progress=lambda e, f: events.append((e, f.local)))
    assert report.fetched == list(LAYOUT) and report.present == [] and report.replaced == []
    assert report.bytes_fetched == report.bytes_total == sum(len(d) for d in material.data.values())
    assert report.seconds > 0 and report.files_total == len(LAYOUT)
    assert events == [("fetch", l) for l in LAYOUT]
    assert sorted(server.requests) == sorted(LAYOUT.values())  # each file once, at its repository path
    assert_complete(dest, material)

    again = fetch(material.files, dest, server.url)
    assert again.fetched == [] and again.present == list(LAYOUT) and again.bytes_fetched == 0
    assert len(server.requests) == len(LAYOUT), "a complete folder must cost no request"


def test_corrupted_file_on_the_server_is_refused(tmp_path, material, server):
    bad = material.files[2]
    served = material.www / bad.remote
    flipped = bytearray(served.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # same size, one bit
    served.write_bytes(bytes(flipped))
    dest = tmp_path / "shared"
    with pytest.raises(ZooError) as e:
        fetch(material.files, dest, server.url)
    msg = str(e.value)
    assert bad.local in msg and f"expected {bad.sha256}" in msg
    assert f"got {hashlib.sha256(flipped).hexdigest()}" in msg
    assert not (dest / bad.local).exists(), "a refused file must not be at its final name"
    assert_complete(dest, material, only=[f.local for f in material.files[:2]])  # those before it landed


@pytest.mark.parametrize("change", [b"", b"extra"], ids=["shorter", "longer"])
def test_file_of_another_size_on_the_server_is_refused(tmp_path, material, server, change):
    bad = material.files[1]
    served = material.www / bad.remote
    served.write_bytes(served.read_bytes()[: -10 if not change else None] + change)
    with pytest.raises(ZooError, match=f"{bad.local}.*{bad.size}"):
        fetch([bad], tmp_path / "shared", server.url)
    assert not (tmp_path / "shared" / bad.local).exists()
    assert not list((tmp_path / "shared").rglob("*.part"))


def test_resume_after_a_connection_dropped_mid_file(tmp_path, material, server):
    dest = tmp_path / "shared"
    broken = material.files[3]
    server.httpd.cut[broken.remote] = broken.size // 2
    with pytest.raises(ZooError, match=f"{broken.local}.*stopped after {broken.size // 2} of {broken.size} bytes"):
        fetch(material.files, dest, server.url)
    assert not (dest / broken.local).exists()
    assert_complete(dest, material, only=[f.local for f in material.files[:3]])

    server.httpd.cut.clear()
    before = len(server.requests)
    report = fetch(material.files, dest, server.url)
    assert report.present == [f.local for f in material.files[:3]]
    assert report.fetched == [f.local for f in material.files[3:]]
    assert server.requests[before:] == [f.remote for f in material.files[3:]]  # only what was missing
    assert_complete(dest, material)


def test_resume_after_the_process_is_killed_mid_file(tmp_path, material, server):
    """SIGKILL while a file is half written: nothing at its final name, and a re-run fetches only the rest."""
    dest = tmp_path / "shared"
    stalled = material.files[4]
    server.httpd.cut[stalled.remote] = stalled.size // 3
    server.httpd.stall.clear()
    proc = subprocess.Popen([sys.executable, "-m", "zoo.core.upstream", "fetch", dest, "--list", material.list_path],
                            env={**os.environ, "PYTHONPATH": str(ROOT), "ZOO_UPSTREAM_URL": server.url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = (dest / stalled.local).with_name(f".{Path(stalled.local).name}.part")
    deadline = time.monotonic() + 20
    while not (part.is_file() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert part.is_file(), "the fetch never reached the stalled file"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    server.httpd.stall.set()
    server.httpd.cut.clear()
    assert not (dest / stalled.local).exists()
    assert_complete(dest, material, only=[f.local for f in material.files[:4]], parts=[part])

    before = len(server.requests)
    report = fetch(material.files, dest, server.url)
    assert report.fetched == [f.local for f in material.files[4:]]
    assert server.requests[before:] == [f.remote for f in material.files[4:]]
    assert_complete(dest, material)  # the stale .part was overwritten, then renamed


def test_a_present_file_with_the_wrong_content_is_fetched_again(tmp_path, material, server):
    dest = tmp_path / "shared"
    fetch(material.files, dest, server.url)
    victim = material.files[0]
    (dest / victim.local).write_bytes(b"x" * victim.size)  # right size, wrong bytes
    before = len(server.requests)
    report = fetch(material.files, dest, server.url)
    assert report.replaced == report.fetched == [victim.local]
    assert server.requests[before:] == [victim.remote]
    assert_complete(dest, material)


def test_zoo_upstream_url_is_honoured(tmp_path, material, server, monkeypatch):
    monkeypatch.delenv("ZOO_UPSTREAM_URL", raising=False)
    assert upstream.base_url() == upstream.DEFAULT_BASE_URL
    monkeypatch.setenv("ZOO_UPSTREAM_URL", server.url + "/")  # a trailing slash is fine
    assert upstream.base_url() == server.url + "/"
    report = fetch(material.files, tmp_path / "shared")
    assert report.base == server.url + "/" and len(server.requests) == len(LAYOUT)
    assert_complete(tmp_path / "shared", material)


def test_cli_fetch_check_and_no_op(tmp_path, material, server):
    dest = tmp_path / "shared"
    env = {"ZOO_UPSTREAM_URL": server.url}
    cp = run_cli("fetch", dest, "--check", "--list", material.list_path, env=env)
    assert_one_error_line(cp, f"{len(LAYOUT)} of {len(LAYOUT)} pinned files are missing or wrong", "fetch_shared.sh")
    assert cp.stdout.splitlines() == [f"{l}: missing" for l in LAYOUT]
    assert server.requests == [], "--check downloads nothing"

    cp = run_cli("fetch", dest, "--list", material.list_path, env=env)
    assert cp.returncode == 0, cp.stderr
    assert f"fetched {len(LAYOUT)}" in cp.stdout and server.url in cp.stdout
    assert_complete(dest, material)

    # DEST from ZOO_SHARED; a complete folder: no request at all
    cp = run_cli("fetch", "--list", material.list_path, env={**env, "ZOO_SHARED": str(dest)})
    assert cp.returncode == 0 and "fetched 0 " in cp.stdout and f"{len(LAYOUT)} already present" in cp.stdout
    assert len(server.requests) == len(LAYOUT)

    (dest / material.files[1].local).write_bytes(b"junk")
    cp = run_cli("fetch", dest, "--check", "--list", material.list_path)
    assert_one_error_line(cp, f"1 of {len(LAYOUT)}")
    assert cp.stdout.strip() == f"{material.files[1].local}: wrong size: 4 bytes, expected {material.files[1].size}"


def test_network_failure_is_one_clear_line(tmp_path, material, server):
    dest = tmp_path / "shared"
    with pytest.raises(ZooError, match="ZOO_UPSTREAM_URL"):
        fetch(material.files, dest, f"http://127.0.0.1:{free_port()}")
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]
    with pytest.raises(ZooError, match="404"):  # a mirror without the file
        fetch([PinnedFile("images/9.jpg", "imgs/9.jpg", "0" * 64, 10)], dest, server.url)
    cp = run_cli("fetch", dest, "--list", material.list_path, env={"ZOO_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}"})
    assert_one_error_line(cp, "cannot download", "ZOO_UPSTREAM_URL", str(dest))
    assert_one_error_line(run_cli("fetch", dest, "--bogus"), "--bogus")


# ------------------------------------------------------------------ the pinned list


def test_the_project_list_is_valid_and_agrees_with_the_checkpoint_manifest():
    from zoo.checkpoints import loader

    files = load_list()
    assert len(files) == 64 and len({f.remote for f in files}) == 64
    ckpts = {Path(f.local).name: f for f in files if f.local.endswith(".pth")}
    manifest = loader.manifest()
    assert set(ckpts) == set(manifest)
    for name, entry in manifest.items():
        f = ckpts[name]
        assert (f.sha256, f.size) == (entry.sha256, entry.bytes), name
        assert f.local == f"upstream/checkpoints/{name}"
        assert entry.url == f"{upstream.DEFAULT_BASE_URL}/{f.remote}", "one base URL for every upstream file"
        assert entry.pinned().remote == f.remote and entry.remote == f.remote
    assert tomllib.loads(upstream.LIST_PATH.read_text())["commit"] == upstream.PINNED_COMMIT


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    return repr(v)


def _load(entries: list[dict]) -> list[PinnedFile]:
    """load_list() of a list file holding ``entries``."""
    lines = [f'commit = "{upstream.PINNED_COMMIT}"']
    for e in entries:
        lines += ["[[file]]"] + [f"{k} = {_toml_value(v)}" for k, v in e.items()]
    with tempfile.TemporaryDirectory(prefix="pinned-") as d:
        (Path(d) / "list.toml").write_text("\n".join(lines) + "\n")
        return load_list(Path(d) / "list.toml")


GOOD = {"local": "images/1.jpg", "remote": "imgs/1.jpg", "sha256": "ab" * 32, "size": 12}
OTHER = {"local": "images/2.jpg", "remote": "imgs/2.jpg", "sha256": "cd" * 32, "size": 3}

BAD_PATHS = ["", "/etc/passwd", "../x", "a/../b", "a/..", "./a", "a/./b", "a//b", "a/", ".", "a\\b", "a\nb"]
MUTATIONS = (
    [("local", p) for p in BAD_PATHS] + [("remote", p) for p in BAD_PATHS]
    + [("sha256", s) for s in ["ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, 12, ""]]
    + [("size", s) for s in [0, -1, True, "12", 1.5]]
    + [("size", None), ("sha256", None), ("local", None), ("remote", None), ("mirror", "x")]
)


@settings(max_examples=len(MUTATIONS) * 2, deadline=None, database=None)
@given(mutation=st.sampled_from(MUTATIONS), position=st.integers(0, 1))
def test_malformed_entries_are_refused_naming_the_entry(mutation, position):
    key, value = mutation
    bad = dict(GOOD)
    if value is None:
        del bad[key]
    else:
        bad[key] = value
    entries = [OTHER, bad] if position else [bad, OTHER]
    with pytest.raises(ZooError) as e:
        _load(entries)
    msg = str(e.value)
    named = repr(bad["local"]) if isinstance(bad.get("local"), str) else f"#{position + 1}"
    assert f"entry {named}" in msg, msg


@settings(max_examples=150, deadline=None, database=None)
@given(path=st.text(alphabet=st.sampled_from("ab./\\\n "), max_size=8))
def test_any_path_is_accepted_only_when_relative_and_normalised(path):
    try:
        files = _load([{**GOOD, "local": path}])
    except ZooError as e:
        assert "entry" in str(e)
        return
    (f,) = files
    assert not f.local.startswith("/") and ".." not in f.local.split("/")
    assert os.path.normpath(f.local) == f.local and "\\" not in f.local and "\n" not in f.local


@pytest.mark.parametrize("text, needle", [
    ("commit = \n", "not valid TOML"),
    (f"commit = '{upstream.PINNED_COMMIT}'\n", "no [[file]] entries"),
    ("[[file]]\nlocal = 'a'\n", "not the pinned"),
    (f"commit = '{upstream.PINNED_COMMIT}'\nextra = 1\n", "unknown keys extra"),
])
def test_malformed_list_files_are_refused(tmp_path, text, needle):
    (tmp_path / "list.toml").write_text(text)
    with pytest.raises(ZooError) as e:
        load_list(tmp_path / "list.toml")
    assert needle in str(e.value)


def test_an_absent_list_is_a_clear_error(tmp_path):
    with pytest.raises(ZooError, match="cannot read the pinned list"):
        load_list(tmp_path / "absent.toml")


def test_duplicates_and_file_folder_clashes_are_refused():
    with pytest.raises(ZooError, match="'images/1.jpg' is listed twice"):
        _load([GOOD, {**OTHER, "local": GOOD["local"]}])
    with pytest.raises(ZooError, match="'images' is also a folder"):
        _load([GOOD, {**OTHER, "local": "images"}])
