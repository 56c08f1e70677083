"""The one pinned fetcher for files of the original UltraFace repository: the test material,
the default parity photos (zoo.core.parity_set) and the checkpoints (zoo.checkpoints.loader).

Standard library only: it runs under a bare ``python3`` with ``PYTHONPATH`` at
the repository root, before any dependency is installed.

Every file is taken from the original repository at ``PINNED_COMMIT``, under
``base_url()`` (``$ZOO_UPSTREAM_URL`` when set: a mirror or a test server
holding the repository's files at their own paths), and is written beside its
final name first, checked for size and sha256, then renamed into place. A final
name therefore only ever holds a complete, verified file, and an interrupted
run is resumed by running again.

    python -m zoo.core.upstream fetch [DEST] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import posixpath
import re
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_path, sha256_file
from zoo.core.transfer import Deadline, TransferStalled
from zoo.core.transfer import read1 as _read1

PINNED_COMMIT = "dffdddda9794a50607cba8f318507a28c1c27cab"
REPOSITORY = "https://github.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB"
DEFAULT_BASE_URL = f"{REPOSITORY}/raw/{PINNED_COMMIT}"
ENV_URL = "ZOO_UPSTREAM_URL"
ENV_SHARED = "ZOO_SHARED"
LIST_PATH = Path(__file__).parent / "data" / "test_material.toml"
TIMEOUT = 30  # seconds, for the connection and for each read
_CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEYS = ("local", "remote", "sha256", "size")


def base_url() -> str:
    """The root under which the original repository's files sit at their own paths."""
    return os.environ.get(ENV_URL) or DEFAULT_BASE_URL


def default_dest() -> Path:
    """Where the shared material lives: ``$ZOO_SHARED``, else ``../shared`` from the current folder."""
    env = os.environ.get(ENV_SHARED)
    return Path(env).expanduser() if env else Path.cwd().parent / "shared"


@dataclass(frozen=True)
class PinnedFile:
    local: str  # path under the shared folder
    remote: str  # path in the original repository
    sha256: str
    size: int


def _check_path(value: object) -> str | None:
    """Why ``value`` is not a relative, normalised POSIX path (None if it is one)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if "\\" in value or "\0" in value or any(ord(c) < 32 for c in value):
        return "must not hold backslashes or control characters"
    if value.startswith("/"):
        return "must be relative"
    if ".." in value.split("/"):
        return "must not hold '..'"
    if posixpath.normpath(value) != value or value == ".":
        return "must be normalised (no '.', '//' or trailing '/')"
    return None


def _entry(i: int, raw: object, where: Path) -> PinnedFile:
    if not isinstance(raw, dict):
        raise ZooError(f"pinned list {where}: entry #{i} is not a table")
    name = repr(raw["local"]) if isinstance(raw.get("local"), str) else f"#{i}"
    bad = f"pinned list {where}: entry {name}"
    missing = [k for k in _KEYS if k not in raw]
    if missing:
        raise ZooError(f"{bad} lacks {', '.join(missing)}")
    extra = sorted(set(raw) - set(_KEYS))
    if extra:
        raise ZooError(f"{bad} has unknown keys {', '.join(extra)}")
    for key in ("local", "remote"):
        why = _check_path(raw[key])
        if why:
            raise ZooError(f"{bad}: {key} path {raw[key]!r} {why}")
    if not isinstance(raw["sha256"], str) or not _SHA256.fullmatch(raw["sha256"]):
        raise ZooError(f"{bad}: sha256 must be 64 lowercase hex digits, got {raw['sha256']!r}")
    size = raw["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ZooError(f"{bad}: size must be a positive integer, got {size!r}")
    return PinnedFile(raw["local"], raw["remote"], raw["sha256"], size)


def load_list(path: Path | str | None = None) -> list[PinnedFile]:
    """Read and validate a pinned list (default: the package's ``data/test_material.toml``)."""
    where = Path(path) if path is not None else LIST_PATH
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as e:
        raise ZooError(f"cannot read the pinned list {where}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"pinned list {where} is not valid TOML: {e}") from None
    extra = sorted(set(data) - {"commit", "file"})
    if extra:
        raise ZooError(f"pinned list {where} has unknown keys {', '.join(extra)}")
    if data.get("commit") != PINNED_COMMIT:
        raise ZooError(f"pinned list {where} is for commit {data.get('commit')!r}, not the pinned {PINNED_COMMIT}")
    raw = data.get("file")
    if not isinstance(raw, list) or not raw:
        raise ZooError(f"pinned list {where} holds no [[file]] entries")
    files = [_entry(i, r, where) for i, r in enumerate(raw, 1)]
    seen: set[str] = set()
    for f in files:
        if f.local in seen:
            raise ZooError(f"pinned list {where}: entry {f.local!r} is listed twice")
        seen.add(f.local)
    dirs = {str(p) for f in files for p in Path(f.local).parents}
    clash = sorted(seen & dirs)
    if clash:
        raise ZooError(f"pinned list {where}: entry {clash[0]!r} is also a folder of another entry")
    return files


def render_list(files: Iterable[PinnedFile], header: str = "") -> str:
    """The TOML text of a pinned list (what ``load_list`` reads)."""
    lines = [f"# {l}".rstrip() for l in header.splitlines()]
    lines += [f'commit = "{PINNED_COMMIT}"', ""]
    for f in files:
        lines += ["[[file]]", f'local = "{f.local}"', f'remote = "{f.remote}"', f'sha256 = "{f.sha256}"', f"size = {f.size}", ""]
    return "\n".join(lines)


def status(f: PinnedFile, dest: Path, *, sha256: bool = True) -> str | None:
    """None if ``dest/f.local`` holds the pinned file, else why not ("missing", "wrong size ...", "wrong sha256 ...").

    ``sha256=False`` checks presence and size only (a quick look, not a verification).
    """
    p = dest / f.local
    if not p.is_file():
        return "missing"
    size = p.stat().st_size
    if size != f.size:
        return f"wrong size: {size} bytes, expected {f.size}"
    if not sha256:
        return None
    got = sha256_file(p)
    if got != f.sha256:
        return f"wrong sha256: {got}, expected {f.sha256}"
    return None


@dataclass
class FetchReport:
    dest: Path
    base: str
    fetched: list[str] = field(default_factory=list)  # local paths downloaded (replaced ones included)
    present: list[str] = field(default_factory=list)  # already there and verified
    replaced: list[str] = field(default_factory=list)  # were there with the wrong content, fetched again
    bytes_fetched: int = 0
    bytes_total: int = 0  # of every listed file
    seconds: float = 0.0

    @property
    def files_total(self) -> int:
        return len(self.fetched) + len(self.present)

    def summary(self) -> str:
        s = f"{self.files_total} files ({self.bytes_total} bytes) verified in {self.dest}"
        s += f"; fetched {len(self.fetched)} ({self.bytes_fetched} bytes) in {self.seconds:.2f} s"
        if self.fetched:
            s += f" from {self.base}"
        if self.replaced:
            s += f", {len(self.replaced)} of them replacing a wrong file"
        return s + f"; {len(self.present)} already present"


def file_url(remote: str, base: str | None = None) -> str:
    """The URL of a file of the original repository (its path there) under ``base`` (default: ``base_url()``)."""
    return (base or base_url()).rstrip("/") + "/" + urllib.parse.quote(remote)


def _network_error(f: PinnedFile, url: str, reason: object, dest: Path, hint: str | None) -> ZooError:
    what = hint or f"offline? set {ENV_URL} to a mirror of the original repository or provide the folder {dest} ({ENV_SHARED})"
    return ZooError(f"cannot download {f.remote} from {url} ({reason}); {what}")


def _download(f: PinnedFile, url: str, target: Path, dest: Path, hint: str | None = None) -> None:
    """Fetch ``url`` into ``target`` through ``.NAME.part`` beside it, verified before the rename."""
    h = hashlib.sha256()
    n = 0
    # a run killed mid-file leaves only .NAME.part, which the next run overwrites
    with atomic_path(target, fixed=f".{target.name}.part") as tmp, open(tmp, "wb") as out:
        deadline = Deadline(f"download of {f.remote} from {url}", hint=f"nothing was saved at {target}")
        try:
            resp = urllib.request.urlopen(url, timeout=min(TIMEOUT, deadline.wait(TIMEOUT)))
        except urllib.error.HTTPError as e:
            raise _network_error(f, url, f"HTTP {e.code} {e.reason}", dest, hint) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise _network_error(f, url, getattr(e, "reason", None) or e, dest, hint) from None
        with resp:
            # one byte more than pinned is enough to know the file is not the pinned one
            while n <= f.size:
                try:
                    chunk = _read1(resp, min(_CHUNK, f.size + 1 - n), deadline, TIMEOUT)
                except TransferStalled:
                    raise
                except (http.client.HTTPException, OSError) as e:
                    raise _network_error(f, url, f"after {n} of {f.size} bytes: {e or type(e).__name__}", dest, hint) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:
                    raise ZooError(f"cannot write {target}: {e.strerror or e}") from None
                h.update(chunk)
                n += len(chunk)
        out.flush()
        if n < f.size:
            raise ZooError(
                f"download of {f.local} from {url} stopped after {n} of {f.size} bytes; "
                f"nothing was saved at {target}: run again to fetch what is missing"
            )
        if n > f.size:
            raise ZooError(f"{f.local} from {url} is larger than the pinned {f.size} bytes; nothing was saved at {target}")
        got = h.hexdigest()
        if got != f.sha256:
            raise ZooError(
                f"sha256 mismatch for {f.local} from {url}: expected {f.sha256}, got {got}; nothing was saved at {target}"
            )


def fetch(
    files: Iterable[PinnedFile],
    dest: Path,
    base: str | None = None,
    *,
    progress: Callable[[str, PinnedFile], None] | None = None,
    hint: str | None = None,
) -> FetchReport:
    """Lay out every pinned file under ``dest``, downloading only what is missing or wrong.

    ``progress(event, file)`` is called with "present", "fetch" (a download starts) or
    "replace" (a download starts over a file with the wrong content). ``hint`` is what a
    failed download's error tells the user to do (default: set the mirror or provide the
    shared folder); the photos and the checkpoints each have their own.
    """
    dest = Path(dest)
    base = base or base_url()
    start = time.monotonic()
    report = FetchReport(dest=dest, base=base)
    for f in files:
        report.bytes_total += f.size
        why = status(f, dest)
        if why is None:
            report.present.append(f.local)
            if progress:
                progress("present", f)
            continue
        if progress:
            progress("fetch" if why == "missing" else "replace", f)
        _download(f, file_url(f.remote, base), dest / f.local, dest, hint)
        report.fetched.append(f.local)
        report.bytes_fetched += f.size
        if why != "missing":
            report.replaced.append(f.local)
    report.seconds = time.monotonic() - start
    return report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 1, like every zoo error
        raise ZooError(message)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m zoo.core.upstream", description="Fetch the pinned files of the original repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="lay out the shared test material (no-op when complete)")
    p.add_argument("dest", nargs="?", help=f"the shared folder (default: ${ENV_SHARED}, else ../shared)")
    p.add_argument("--check", action="store_true", help="verify only, download nothing (exit 1 if anything is missing or wrong)")
    p.add_argument("--list", type=Path, default=None, help="the pinned list (default: the package's)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    try:
        args = parser.parse_args(argv)
        dest = Path(args.dest) if args.dest else default_dest()  # "" too: never the current folder by accident
        files = load_list(args.list)
        if args.check:
            bad = [(f, why) for f in files if (why := status(f, dest)) is not None]
            for f, why in bad:
                print(f"{f.local}: {why}")
            if bad:
                raise ZooError(f"{len(bad)} of {len(files)} pinned files are missing or wrong in {dest}; "
                               f"run scripts/fetch_shared.sh {dest}")
            print(f"{len(files)} files ({sum(f.size for f in files)} bytes) verified in {dest}")
            return 0

        def show(event: str, f: PinnedFile) -> None:
            if event != "present" and not args.quiet:
                print(f"{event} {f.local} ({f.size} bytes)", file=sys.stderr, flush=True)

        print(fetch(files, dest, progress=show).summary())
        return 0
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
