"""Checkpoints are downloaded by the one pinned fetcher (zoo.core.upstream), from their path in the original
repository (models/pretrained/<name>) under ZOO_UPSTREAM_URL, into the checkpoint cache; served here by a
loopback mirror holding a made-up checkpoint file. Nothing here needs ../shared."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from zoo.checkpoints import loader
from mirror import Server, free_port
from zoo.core import upstream
from zoo.core.errors import ZooError

CONTENT = b"PK\x03\x04 a made-up checkpoint " * 997


@pytest.fixture
def entry():
    real = loader.manifest()["version-slim-320.pth"]
    return replace(real, name="made-up.pth", remote="models/pretrained/made-up.pth",
                   sha256=hashlib.sha256(CONTENT).hexdigest(), bytes=len(CONTENT))


@pytest.fixture
def mirror(tmp_path):
    www = tmp_path / "www"
    (www / "models" / "pretrained").mkdir(parents=True)
    (www / "models" / "pretrained" / "made-up.pth").write_bytes(CONTENT)
    s = Server(www)
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(tmp_path / "no-such-folder"))
    return tmp_path / "cache" / "checkpoints"


def test_download_through_the_fetcher_from_the_mirror_then_cached(entry, mirror, env, monkeypatch):
    monkeypatch.setenv("ZOO_UPSTREAM_URL", mirror.url)
    got = loader.resolve(entry)
    assert got == env / "made-up.pth" and got.read_bytes() == CONTENT
    assert mirror.requests == ["models/pretrained/made-up.pth"]  # the repository's path, under the mirror
    assert sorted(p.name for p in env.iterdir()) == ["made-up.pth"], "no temporary file left"
    assert loader.resolve(entry) == got and len(mirror.requests) == 1, "a cached checkpoint costs no request"
    with pytest.raises(ZooError, match="not found in ZOO_CHECKPOINT_DIR or the cache"):
        loader.resolve(replace(entry, name="other.pth"), download=False)


def test_a_wrong_file_on_the_mirror_is_refused_and_nothing_is_cached(entry, mirror, env, monkeypatch):
    monkeypatch.setenv("ZOO_UPSTREAM_URL", mirror.url)
    bad = bytearray(CONTENT)
    bad[100] ^= 1  # same size, one bit
    (env.parent.parent / "www" / "models" / "pretrained" / "made-up.pth").write_bytes(bytes(bad))
    with pytest.raises(ZooError) as e:
        loader.resolve(entry)
    assert f"expected {entry.sha256}" in str(e.value) and "made-up.pth" in str(e.value)
    assert not (env / "made-up.pth").exists() and not list(env.glob("*.part"))


def test_offline_is_one_line_naming_the_ways_out(entry, env, monkeypatch):
    monkeypatch.setenv("ZOO_UPSTREAM_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ZooError) as e:
        loader.resolve(entry)
    msg = str(e.value)
    assert "\n" not in msg and "cannot download models/pretrained/made-up.pth" in msg
    assert "ZOO_CHECKPOINT_DIR=" in msg and "ZOO_UPSTREAM_URL" in msg
    assert "ZOO_SHARED" not in msg, "the checkpoints' own advice, not the test material's"
    assert not (env / "made-up.pth").exists()


def test_an_unwritable_cache_says_which_variable_to_set(entry, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(blocker))  # the cache would be a folder under a file
    monkeypatch.setenv("ZOO_UPSTREAM_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ZooError, match="cannot create the checkpoint cache .*set ZOO_CACHE_DIR"):
        loader.resolve(entry)


def test_the_public_url_is_the_pinned_repository_whatever_the_mirror(monkeypatch):
    monkeypatch.setenv("ZOO_UPSTREAM_URL", "http://127.0.0.1:9/mirror")
    loader.manifest.cache_clear()
    try:
        for e in loader.manifest().values():
            assert e.url == f"{upstream.DEFAULT_BASE_URL}/models/pretrained/{e.name}"
            assert e.pinned() == upstream.PinnedFile(e.name, f"models/pretrained/{e.name}", e.sha256, e.bytes)
    finally:
        loader.manifest.cache_clear()
