"""The manifest of a folder of artifacts (`zoo export`) or of a release (`zoo release`).

Typed entries (`FileEntry`, `Artifact`, `Failure`, `Manifest`), the only reader
(`read_manifest`, which validates the schema and confines every path to the
folder) and the only writer (`write_manifest`, atomic), the artifact key,
precision flavours, and the one check that files match their sha256.

The JSON shape is the product's public interface (docs/manifest.md):
`to_dict` writes exactly that shape, key order included, so manifests stay
byte-reproducible.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from zoo.core.version import __version__
from zoo.core.errors import ZooError
from zoo.core.fsutil import atomic_write_text, sha256_file

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


# --------------------------------------------------------------------------- names

#: flavours named after their storage type, and the precision (tier) they belong to
_STORAGE = {"uint8": "int8"}


def base_precision(flavour: str) -> str:
    """The precision a flavour belongs to: "int8-io" and "int8-weight" are int8, and so is "uint8-weight"
    (TF.js's uint8 weight storage, float compute)."""
    head = flavour.split("-", 1)[0]
    return _STORAGE.get(head, head)


@dataclass(frozen=True)
class ArtifactKey:
    """What identifies an artifact within a manifest."""

    model: str
    target: str
    precision: str
    head: str
    dynamic: bool = False  # batch, height and width free at run time: its own artifact beside the fixed one
    #: "" (the default build) or the ``NAME==VERSION`` the artifact was converted for (`--min-runtime`)
    min_runtime: str = ""

    def label(self) -> str:
        return (f"{self.target}/{self.precision}/{self.head}" + ("/dynamic" if self.dynamic else "")
                + min_runtime_suffix(self.min_runtime, "@"))

    def __str__(self) -> str:
        return f"{self.model} {self.label()}"


def min_runtime_suffix(spec: str, sep: str = "-for-") -> str:
    """The name part of an artifact converted for an older runtime (``mnn==3.0.0`` -> ``-for-mnn3.0.0``,
    or ``@mnn3.0.0`` in labels); "" for the default build."""
    return f"{sep}{spec.replace('==', '')}" if spec else ""


def sort_key(key: ArtifactKey, target_order: list[str]) -> tuple:
    """The manifest's order: model, target (registry order), precision (fp32, fp16, int8), flavour, head,
    then the default build before builds for an older runtime."""
    t = target_order.index(key.target) if key.target in target_order else len(target_order)
    base = base_precision(key.precision)
    return (key.model, t, PRECISIONS.index(base) if base in PRECISIONS else 9, key.precision, key.head, key.dynamic,
            key.min_runtime)


# --------------------------------------------------------------------------- paths

def confine(root: Path, rel: str, what: str = "manifest") -> Path:
    """``root / rel`` for a path a manifest names, refused unless it stays inside ``root``.

    The path must be relative, normalized (no ``.``/``..`` parts, no empty parts, no
    backslashes) and, once symlinks are resolved, still inside ``root``.
    """
    if not isinstance(rel, str) or not rel:
        raise ZooError(f"{what}: an entry has an empty or non-text path ({rel!r})")
    pp = PurePosixPath(rel)
    if "\\" in rel or "\0" in rel or pp.is_absolute() or rel.startswith("/") or any(
        part in ("..", ".", "") for part in rel.split("/")
    ):
        raise ZooError(f"{what}: path {rel!r} leaves its folder or is not normalized; refusing it")
    root_r = Path(root).resolve()
    full = Path(root) / rel
    try:
        resolved = full.resolve()
    except (OSError, RuntimeError) as e:
        raise ZooError(f"{what}: path {rel!r} cannot be resolved ({e})") from None
    if resolved != root_r and root_r not in resolved.parents:
        raise ZooError(f"{what}: path {rel!r} resolves outside its folder (a symlink?); refusing it")
    return full


# --------------------------------------------------------------------------- entries

def _req(d: Any, key: str, typ, where: str):
    if not isinstance(d, dict):
        raise ZooError(f"{where}: expected an object, got {type(d).__name__}")
    if key not in d:
        raise ZooError(f"{where}: missing key {key!r}")
    v = d[key]
    if typ is int and isinstance(v, bool) or not isinstance(v, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise ZooError(f"{where}: {key!r} must be {name}, got {type(v).__name__}")
    return v


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, root: Path, rel: str) -> "FileEntry":
        p = Path(root) / rel
        return cls(rel, sha256_file(p), p.stat().st_size)

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "FileEntry":
        sha = _req(d, "sha256", str, where)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ZooError(f"{where}: sha256 {sha[:80]!r} is not 64 hex digits")
        size = _req(d, "bytes", int, where)
        if size < 0:
            raise ZooError(f"{where}: negative size {size}")
        return cls(_req(d, "path", str, where), sha, size)


def file_entries(root: Path, rels: Iterable[str]) -> list[FileEntry]:
    return [FileEntry.of(root, r) for r in sorted(set(rels))]


def file_problem(root: Path, f: FileEntry) -> str | None:
    """None when the file exists with its recorded size and sha256; otherwise what is wrong."""
    p = Path(root) / f.path
    try:
        if not p.is_file():
            return f"{f.path}: missing"
        if p.stat().st_size != f.bytes or sha256_file(p) != f.sha256:
            return f"{f.path}: sha256 mismatch"
    except OSError as e:
        return f"{f.path}: unreadable ({e.strerror or e})"
    return None


def verify_files(root: Path, files: Iterable[FileEntry]) -> list[str]:
    """The one check that files match their manifest: a problem line per bad file."""
    return [pr for pr in (file_problem(root, f) for f in files) if pr]


def _dynamic(d: dict, where: str) -> bool:
    v = d.get("dynamic", False)
    if not isinstance(v, bool):
        raise ZooError(f"{where}: 'dynamic' must be true or false")
    return v


@dataclass
class Failure:
    """An artifact that could not be built (converter error, missing runtime, ...)."""

    model: str
    target: str
    precision: str
    head: str
    error: str
    dynamic: bool = False
    min_runtime: str = ""

    @property
    def key(self) -> ArtifactKey:
        return ArtifactKey(self.model, self.target, self.precision, self.head, self.dynamic, self.min_runtime)

    def to_dict(self) -> dict:
        d = {"model": self.model, "target": self.target, "precision": self.precision, "head": self.head}
        if self.dynamic:  # written only when set: fixed-size entries keep their old shape
            d["dynamic"] = True
        if self.min_runtime:
            d["min_runtime"] = self.min_runtime
        d["error"] = self.error
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str, default_model: str = "") -> "Failure":
        model = d.get("model", default_model) if isinstance(d, dict) else None
        if not isinstance(model, str):
            raise ZooError(f"{where}: 'model' must be str")
        return cls(model, _req(d, "target", str, where), _req(d, "precision", str, where), _req(d, "head", str, where),
                   str(d.get("error", "")), _dynamic(d, where), _min_runtime(d, where))


def _min_runtime(d: dict, where: str) -> str:
    v = d.get("min_runtime", "")
    if not isinstance(v, str) or len(v) > 80:
        raise ZooError(f"{where}: 'min_runtime' must be short text (NAME==VERSION)")
    return v


@dataclass
class Artifact:
    """One artifact: its files (primary first in `primary`), how it was made, and its parity result."""

    model: str
    target: str
    precision: str
    head: str
    layout: str
    primary: str
    files: list[FileEntry]
    tools: dict = field(default_factory=dict)
    parity: dict | None = None
    meta: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    inputs_sha256: str | None = None
    dynamic: bool = False
    min_runtime: str = ""  # "" or the NAME==VERSION it was converted for (`zoo export --min-runtime`)

    @property
    def key(self) -> ArtifactKey:
        return ArtifactKey(self.model, self.target, self.precision, self.head, self.dynamic, self.min_runtime)

    @property
    def passed(self) -> bool:
        """Parity ran and passed."""
        return bool(self.parity and self.parity.get("passed"))

    @property
    def size(self) -> int:
        return sum(f.bytes for f in self.files)

    def file(self, rel: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == rel), None)

    def to_dict(self) -> dict:
        d = {"model": self.model, "target": self.target, "precision": self.precision, "head": self.head}
        if self.dynamic:  # written only when set: fixed-size entries keep their old shape
            d["dynamic"] = True
        if self.min_runtime:
            d["min_runtime"] = self.min_runtime
        d |= {"layout": self.layout, "primary": self.primary, "files": [f.to_dict() for f in self.files],
             "tools": self.tools, "parity": self.parity, "meta": self.meta, "lineage": self.lineage}
        if self.inputs_sha256 is not None:
            d["inputs_sha256"] = self.inputs_sha256
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str, default_model: str = "") -> "Artifact":
        model = d.get("model", default_model) if isinstance(d, dict) else None
        if not isinstance(model, str):
            raise ZooError(f"{where}: 'model' must be str")
        files = [FileEntry.from_dict(f, f"{where}, file {i}") for i, f in enumerate(_req(d, "files", list, where))]
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise ZooError(f"{where}: lists a file twice")
        primary = _req(d, "primary", str, where)
        if primary not in paths:
            raise ZooError(f"{where}: primary {primary!r} is not among its files")
        parity = d.get("parity")
        if parity is not None and not (isinstance(parity, dict) and isinstance(parity.get("passed"), bool)):
            raise ZooError(f"{where}: 'parity' must be an object with a boolean 'passed'")
        for k in ("tools", "meta", "lineage"):
            if not isinstance(d.get(k, {}), dict):
                raise ZooError(f"{where}: {k!r} must be an object")
        ish = d.get("inputs_sha256")
        if ish is not None and not isinstance(ish, str):
            raise ZooError(f"{where}: 'inputs_sha256' must be str")
        return cls(model, _req(d, "target", str, where), _req(d, "precision", str, where), _req(d, "head", str, where),
                   str(d.get("layout", "NCHW")), primary, files, d.get("tools", {}), parity, d.get("meta", {}),
                   d.get("lineage", {}), ish, _dynamic(d, where), _min_runtime(d, where))


# --------------------------------------------------------------------------- manifest

@dataclass
class Manifest:
    """An export folder's manifest (``model`` set) or a release's (``release`` set)."""

    artifacts: list[Artifact] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    model: dict | None = None  # export: the model's description
    skipped: list[dict] = field(default_factory=list)  # export: combinations a target does not offer
    release: dict | None = None  # release: {"models", "targets", "precisions"}
    models: dict = field(default_factory=dict)  # release: model id -> description
    #: files beside the artifacts: a release's golden kit and cards; the web module (web/ultraface.js) of a
    #: release or an export holding web artifacts
    files: list[FileEntry] = field(default_factory=list)
    zoo_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def is_release(self) -> bool:
        return self.release is not None

    def all_files(self) -> list[FileEntry]:
        return [f for a in self.artifacts for f in a.files] + list(self.files)

    def sorted(self, target_order: list[str]) -> "Manifest":
        self.artifacts.sort(key=lambda a: sort_key(a.key, target_order))
        self.failed.sort(key=lambda f: sort_key(f.key, target_order))
        self.files.sort(key=lambda f: f.path)
        return self

    def to_dict(self) -> dict:
        d: dict = {"schema_version": self.schema_version, "zoo_version": self.zoo_version}
        if self.is_release:
            d["release"] = self.release
            d["models"] = self.models
        else:
            d["model"] = self.model
        d["artifacts"] = [a.to_dict() for a in self.artifacts]
        d["failed"] = [f.to_dict() for f in self.failed]
        if self.is_release:
            d["files"] = [f.to_dict() for f in self.files]
        else:
            d["skipped"] = self.skipped
            if self.files:  # written only when there are some: other exports keep their old shape
                d["files"] = [f.to_dict() for f in self.files]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Manifest":
        if not isinstance(d, dict):
            raise ZooError(f"{where}: not a manifest (expected a JSON object)")
        sv = d.get("schema_version")
        if sv != SCHEMA_VERSION:
            raise ZooError(f"{where}: schema_version {sv!r} is not supported (this zoo reads {SCHEMA_VERSION})")
        release = d.get("release")
        model = d.get("model")
        if release is None and model is None:
            raise ZooError(f"{where}: neither a 'model' nor a 'release' section")
        if release is not None:
            if not isinstance(release, dict) or not all(isinstance(release.get(k), list) for k in ("models", "targets", "precisions")):
                raise ZooError(f"{where}: 'release' must hold lists 'models', 'targets' and 'precisions'")
            if not isinstance(d.get("models", {}), dict):
                raise ZooError(f"{where}: 'models' must be an object")
        elif not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise ZooError(f"{where}: 'model' must be an object with an 'id'")
        default_model = "" if release is not None else model["id"]
        arts = [Artifact.from_dict(a, f"{where}: artifact {i}", default_model)
                for i, a in enumerate(_req(d, "artifacts", list, where))]
        if not isinstance(d.get("failed", []) or [], list) or not isinstance(d.get("files", []) or [], list):
            raise ZooError(f"{where}: 'failed' and 'files' must be lists")  # checked before either is read
        failed = [Failure.from_dict(f, f"{where}: failed {i}", default_model) for i, f in enumerate(d.get("failed", []) or [])]
        files = [FileEntry.from_dict(f, f"{where}: file {i}") for i, f in enumerate(d.get("files", []) or [])]
        keys = [a.key for a in arts]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ZooError(f"{where}: artifact {dup} is listed twice")
        paths = [f.path for a in arts for f in a.files] + [f.path for f in files]
        if len(set(paths)) != len(paths):
            dup = next(p for p in paths if paths.count(p) > 1)
            raise ZooError(f"{where}: file {dup!r} is listed twice")
        skipped = d.get("skipped", []) or []
        if not isinstance(skipped, list):
            raise ZooError(f"{where}: 'skipped' must be a list")
        zv = d.get("zoo_version", "")
        return cls(arts, failed, model if release is None else None, skipped, release,
                   d.get("models", {}) if release is not None else {}, files, zv if isinstance(zv, str) else str(zv), sv)

    def confine(self, root: Path, where: str) -> "Manifest":
        """Refuse the manifest if any path it names leaves ``root``."""
        for a in self.artifacts:
            for f in a.files:
                confine(root, f.path, f"{where}: {a.key}")
        for f in self.files:
            confine(root, f.path, where)
        return self


def manifest_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder / MANIFEST if folder.is_dir() else folder


def read_manifest(folder: Path) -> Manifest:
    """The manifest of ``folder`` (or the manifest file itself), validated and confined to its folder."""
    path = manifest_path(folder)
    if not path.is_file():
        raise ZooError(f"no {MANIFEST} in {folder}: point at a folder written by `zoo export` or `zoo release`")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    return Manifest.from_dict(data, str(path)).confine(path.parent, str(path))


def existing_manifest(folder: Path) -> Manifest | None:
    """The manifest already in an output folder (to resume or merge with), or None when there is none.

    A manifest that is there but refused (malformed, or naming paths outside the folder) is an
    error, not a fresh start: the folder holds something this tool did not write.
    """
    if not manifest_path(folder).is_file():
        return None
    try:
        return read_manifest(folder)
    except ZooError as e:
        raise ZooError(f"{e}; the output folder's manifest cannot be resumed from: remove it or choose another --out") from None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_text(Path(folder) / MANIFEST, manifest.to_json())
