"""The default parity set: the photos a verdict is proven on when no ``--images`` is given.

They are the 16 photos pinned as ``images/*.jpg`` in ``data/test_material.toml``: the original
project's ``imgs/<name>`` at the commit the checkpoints are pinned to, each by name, size and
sha256 (about 290 faces per model, from under 16 to over 64 pixels high). They are never copied
into the package or into a release folder; they are found, in this order:

1. ``$ZOO_IMAGES_DIR``, when set: a local copy (offline). Every pinned photo must be there with
   its sha256, else a ZooError names the photo and what to do;
2. the user cache (``$ZOO_CACHE_DIR/images``, else ``${XDG_CACHE_HOME:-~/.cache}/ultraface-zoo/images``),
   where the one pinned fetcher (zoo.core.upstream, from ``$ZOO_UPSTREAM_URL`` or the original
   repository) puts whatever is missing on first use;
3. when that fetch fails (offline, no mirror): one warning line, and the 3 built-in photos
   (one face each), on which an fp16/int8 verdict is weak evidence.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from zoo.core import upstream
from zoo.core.errors import ZooError
from zoo.core.fsutil import user_cache
from zoo.core.images import builtin_images

ENV_IMAGES = "ZOO_IMAGES_DIR"
FOLDER = "images"  # the photos' folder in the pinned list (and in the shared material)


def pinned_photos(files: list[upstream.PinnedFile] | None = None) -> list[upstream.PinnedFile]:
    """The ``images/*.jpg`` entries of the pinned list (default: the package's), each under its file name."""
    files = upstream.load_list() if files is None else files
    out = []
    for f in files:
        p = PurePosixPath(f.local)
        if str(p.parent) == FOLDER and p.suffix.lower() == ".jpg":
            out.append(replace(f, local=p.name))
    if not out:
        raise ZooError(f"the pinned list holds no {FOLDER}/*.jpg photos")
    return out


def cache_dir() -> Path:
    """Where fetched photos are kept: ``$ZOO_CACHE_DIR/images``, else the user cache."""
    return user_cache(FOLDER)


@dataclass(frozen=True)
class ParitySet:
    paths: list[Path]
    source: str  # ENV_IMAGES, "cache" or "built-in"
    note: str | None = None  # why the built-in photos are used (the fetch's error)

    @property
    def fallback(self) -> bool:
        return self.source == "built-in"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _from_folder(photos: list[upstream.PinnedFile], folder: Path) -> ParitySet:
    if not folder.is_dir():
        raise ZooError(f"{ENV_IMAGES}={folder} is not a folder; point it at a copy of the {len(photos)} pinned "
                       f"photos or unset it to fetch them into the cache")
    bad = [(f, why) for f in photos if (why := upstream.status(f, folder)) is not None]
    if bad:
        f, why = bad[0]
        raise ZooError(
            f"pinned photo {f.local} in {ENV_IMAGES}={folder}: {why} ({len(bad)} of {len(photos)} pinned photos missing "
            f"or wrong); copy the original project's {PurePosixPath(f.remote).parent}/ photos there "
            f"(`scripts/fetch_shared.sh DEST` lays them out in DEST/{FOLDER}) or unset {ENV_IMAGES} to fetch them into the cache"
        )
    return ParitySet([folder / f.local for f in photos], ENV_IMAGES)


def default_parity_set(say: Callable[[str], None] | None = None,
                       files: list[upstream.PinnedFile] | None = None) -> ParitySet:
    """The default parity photos (see the module's docstring); ``say`` gets the one-line notes and the
    fallback warning (default: stderr). ``files``: another pinned list (tests)."""
    say = say or _stderr
    photos = pinned_photos(files)
    env = os.environ.get(ENV_IMAGES)
    if env:
        return _from_folder(photos, Path(env).expanduser())
    dest = cache_dir()
    announced = []

    def progress(event: str, f: upstream.PinnedFile) -> None:
        if event != "present" and not announced:
            announced.append(f)
            say(f"fetching the {len(photos)} pinned parity photos into {dest} from {upstream.base_url()} (first use)")

    try:
        upstream.fetch(photos, dest, progress=progress,
                       hint=f"set {ENV_IMAGES} to a local copy of the photos or {upstream.ENV_URL} to a mirror")
    except ZooError as e:
        builtin = builtin_images()
        say(f"warning: the pinned parity photos are not at hand ({e}); proving on the {len(builtin)} built-in photos "
            "instead: fp16/int8 verdicts are weak evidence")
        return ParitySet(builtin, "built-in", str(e))
    return ParitySet([dest / f.local for f in photos], "cache")


def default_images(say: Callable[[str], None] | None = None) -> list[Path]:
    """The paths of the default parity set."""
    return default_parity_set(say).paths
