"""The default parity set (zoo.core.parity_set): ZOO_IMAGES_DIR, the cache filled by the pinned fetcher
from a loopback mirror (ZOO_UPSTREAM_URL), and the built-in fallback when nothing can be fetched.

Made-up photos (real JPEGs, pinned in a list of their own) stand in for the 16 pinned ones; the
package's own list is only read. Nothing here needs ../shared.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror import Server, free_port
from zoo.core import parity_set
from zoo.core.errors import ZooError
from zoo.core.images import builtin_images, read_bgr
from zoo.core.upstream import PinnedFile, load_list

NAMES = ["1.jpg", "2.jpg", "10.jpg", "11.jpg"]


def _jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (24 + seed, 32, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


PHOTOS = {name: _jpeg(i) for i, name in enumerate(NAMES)}
# a pinned list like the package's: photos under images/, and other material that is not a parity photo
PINNED = [PinnedFile(f"images/{n}", f"imgs/{n}", hashlib.sha256(d).hexdigest(), len(d)) for n, d in PHOTOS.items()]
PINNED += [PinnedFile("upstream/LICENSE", "LICENSE", "0" * 64, 10), PinnedFile("images/readme.txt", "imgs/readme.txt", "1" * 64, 5),
           PinnedFile("upstream/images/x.jpg", "x.jpg", "2" * 64, 5)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """No ZOO_IMAGES_DIR, a private cache, and no mirror (a port nothing listens on) unless a test sets one."""
    monkeypatch.delenv("ZOO_IMAGES_DIR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_UPSTREAM_URL", f"http://127.0.0.1:{free_port()}")
    return tmp_path


@pytest.fixture
def mirror(tmp_path):
    www = tmp_path / "www"
    (www / "imgs").mkdir(parents=True)
    for n, d in PHOTOS.items():
        (www / "imgs" / n).write_bytes(d)
    s = Server(www)
    yield s
    s.close()


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for n, d in PHOTOS.items():
        (path / n).write_bytes(d)
    return path


def test_the_package_pins_16_photos_of_the_original_repository():
    photos = parity_set.pinned_photos()
    assert len(photos) == 16
    assert all(f.local.endswith(".jpg") and "/" not in f.local and f.remote == f"imgs/{f.local}" for f in photos)
    listed = [f for f in load_list() if f.local.startswith("images/")]
    assert [f"images/{f.local}" for f in photos] == [f.local for f in listed]


def test_only_images_jpg_entries_are_parity_photos():
    assert [f.local for f in parity_set.pinned_photos(PINNED)] == NAMES
    with pytest.raises(ZooError, match="no images/\\*.jpg"):
        parity_set.pinned_photos(PINNED[-3:])


def test_zoo_images_dir_holding_every_photo_is_used_as_it_is(env, monkeypatch):
    folder = _folder(env / "photos")
    (folder / "extra.jpg").write_bytes(_jpeg(9))  # not pinned: not part of the set
    monkeypatch.setenv("ZOO_IMAGES_DIR", str(folder))
    notes = []
    ps = parity_set.default_parity_set(notes.append, PINNED)
    assert ps.paths == [folder / n for n in NAMES] and ps.source == "ZOO_IMAGES_DIR" and not ps.fallback
    assert notes == [] and not (env / "cache").exists(), "a local copy: nothing fetched, nothing cached"
    assert all(read_bgr(p) is not None for p in ps.paths)


@pytest.mark.parametrize("damage, why", [
    ("missing", "missing"),
    ("other-bytes", "wrong sha256"),
    ("shorter", "wrong size"),
])
def test_zoo_images_dir_with_a_bad_photo_is_one_line_naming_it(env, monkeypatch, damage, why):
    folder = _folder(env / "photos")
    victim = folder / "10.jpg"
    if damage == "missing":
        victim.unlink()
    elif damage == "other-bytes":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    else:
        victim.write_bytes(victim.read_bytes()[:-3])
    monkeypatch.setenv("ZOO_IMAGES_DIR", str(folder))
    with pytest.raises(ZooError) as e:
        parity_set.default_parity_set(lambda m: None, PINNED)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"pinned photo 10.jpg in ZOO_IMAGES_DIR={folder}: {why}" in msg
    assert "1 of 4 pinned photos" in msg and "imgs/" in msg and "unset ZOO_IMAGES_DIR" in msg


def test_zoo_images_dir_that_is_not_a_folder(env, monkeypatch):
    monkeypatch.setenv("ZOO_IMAGES_DIR", str(env / "nowhere"))
    with pytest.raises(ZooError, match="ZOO_IMAGES_DIR=.*nowhere is not a folder"):
        parity_set.default_parity_set(lambda m: None, PINNED)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["delete", "flip", "truncate", "append", "folder"])))
def test_any_damage_to_the_local_copy_is_refused_naming_a_damaged_photo(env, monkeypatch, damage):
    folder = _folder(Path(tempfile.mkdtemp(prefix="photos-", dir=env)))
    for name, how in damage.items():
        p = folder / name
        if how == "delete":
            p.unlink()
        elif how == "flip":
            data = bytearray(p.read_bytes())
            data[0] ^= 0xFF
            p.write_bytes(bytes(data))
        elif how == "truncate":
            p.write_bytes(p.read_bytes()[:1])
        elif how == "append":
            p.write_bytes(p.read_bytes() + b"\0")
        else:
            p.unlink()
            p.mkdir()  # a folder named like the photo
    monkeypatch.setenv("ZOO_IMAGES_DIR", str(folder))
    if not damage:
        assert parity_set.default_parity_set(lambda m: None, PINNED).paths == [folder / n for n in NAMES]
        return
    with pytest.raises(ZooError) as e:
        parity_set.default_parity_set(lambda m: None, PINNED)
    named = [n for n in NAMES if f"pinned photo {n} in" in str(e.value)]
    assert len(named) == 1 and named[0] in damage
    assert f"{len(damage)} of {len(NAMES)} pinned photos" in str(e.value)


def test_fetched_into_the_cache_from_the_mirror_on_first_use_only(env, mirror, monkeypatch):
    monkeypatch.setenv("ZOO_UPSTREAM_URL", mirror.url)
    notes = []
    ps = parity_set.default_parity_set(notes.append, PINNED)
    cache = env / "cache" / "images"
    assert ps.source == "cache" and ps.paths == [cache / n for n in NAMES]
    assert [p.read_bytes() for p in ps.paths] == list(PHOTOS.values())
    assert sorted(mirror.requests) == sorted(f"imgs/{n}" for n in NAMES)
    assert len(notes) == 1 and notes[0].startswith(f"fetching the 4 pinned parity photos into {cache} from {mirror.url}")
    again = []
    assert parity_set.default_parity_set(again.append, PINNED).paths == ps.paths
    assert len(mirror.requests) == len(NAMES) and again == [], "a complete cache: no request, no note"
    (cache / "2.jpg").write_bytes(b"damaged")  # a damaged cached photo is fetched again, alone
    assert parity_set.default_parity_set(lambda m: None, PINNED).paths == ps.paths
    assert mirror.requests[len(NAMES):] == ["imgs/2.jpg"] and (cache / "2.jpg").read_bytes() == PHOTOS["2.jpg"]


def test_the_cache_without_zoo_cache_dir_is_the_user_cache(env, monkeypatch):
    monkeypatch.delenv("ZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(env / "xdg"))
    assert parity_set.cache_dir() == env / "xdg" / "ultraface-zoo" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(env / "home"))
    assert parity_set.cache_dir() == env / "home" / ".cache" / "ultraface-zoo" / "images"


def test_offline_falls_back_to_the_builtin_photos_with_one_warning(env, capsys):
    ps = parity_set.default_parity_set(files=PINNED)  # default: the warning goes to stderr
    assert ps.paths == builtin_images() and ps.source == "built-in" and ps.fallback
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1, err
    w = warnings[0]
    assert "cannot download imgs/1.jpg" in w and "ZOO_IMAGES_DIR" in w and "ZOO_UPSTREAM_URL" in w
    assert "3 built-in photos" in w and "weak evidence" in w
    assert not [p for p in (env / "cache").rglob("*") if p.is_file()], "nothing half-fetched is left"


def test_a_mirror_missing_some_photos_falls_back_and_keeps_what_it_fetched(env, mirror, monkeypatch, tmp_path):
    (tmp_path / "www" / "imgs" / "10.jpg").unlink()
    monkeypatch.setenv("ZOO_UPSTREAM_URL", mirror.url)
    notes = []
    ps = parity_set.default_parity_set(notes.append, PINNED)
    assert ps.fallback and "404" in ps.note and "imgs/10.jpg" in ps.note
    assert notes[-1].startswith("warning:")
    cache = env / "cache" / "images"
    assert sorted(p.name for p in cache.iterdir()) == ["1.jpg", "2.jpg"]  # verified, kept for the next run
