"""The OCI distribution protocol, spoken with the standard library (urllib): references, credentials,
the registry's HTTP API (blobs, manifests, Basic and Bearer auth), and strict parsing of what a
registry sends back.

Everything a registry returns is input: a manifest is size-limited, hashed against the digest it was
asked for, and parsed field by field; a blob is streamed to a temporary file, size-limited and
hashed, and refused (`BlobMismatch`, exit 2) when it is not the content its digest names; a layer's
title is a path that must stay inside the pull folder (`safe_relpath`). Credentials come from the
environment (ZOO_REGISTRY_USER / ZOO_REGISTRY_PASSWORD) or the Docker config (``$DOCKER_CONFIG`` or
``~/.docker/config.json``, ``auths``), never from the command line, and are never sent to another
host than the registry's (a redirect elsewhere drops them).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.core.errors import ZooError
from zoo.core.transfer import Deadline, TransferStalled
from zoo.core.transfer import read as _read_under, read1 as _read1_under

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
MAX_MANIFEST_BYTES = 4 << 20  # an OCI manifest of a release is a few kB; refuse anything absurd before parsing
MAX_BLOB_BYTES = 2 << 30
MAX_LAYERS = 10_000
ENV_USER, ENV_PASSWORD = "ZOO_REGISTRY_USER", "ZOO_REGISTRY_PASSWORD"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::(?P<port>[0-9]{{1,5}}))?")
_REPO_PART = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_REPO_PART}(?:/{_REPO_PART})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_PATH_PART = re.compile(r"[A-Za-z0-9_+@=,-][A-Za-z0-9._+@=,-]{0,254}")


class BlobMismatch(ZooError):
    """Content from the registry that is not what its digest names (exit 2, not a user error)."""


class RegistryError(ZooError):
    """The registry could not be reached, refused us, or answered something we cannot use."""


# --------------------------------------------------------------------------- references and paths

@dataclass(frozen=True)
class Reference:
    host: str  # host[:port]
    repo: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """What the manifest endpoint is asked for: the digest when there is one, else the tag."""
        return self.digest or self.tag or ""

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repo}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


USAGE = "oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST"


def parse_reference(text: str, what: str = "--to") -> Reference:
    """``oci://HOST[:PORT]/REPO:TAG`` or ``oci://HOST[:PORT]/REPO@sha256:HEX``, validated (OCI distribution grammar)."""
    if not isinstance(text, str) or not text.startswith("oci://"):
        raise ZooError(f"{what} {text!r}: expected {USAGE}")
    rest = text[len("oci://"):]
    host, sep, path = rest.partition("/")
    m = _HOST.fullmatch(host)
    if not sep or not m:
        raise ZooError(f"{what} {text!r}: {host!r} is not a registry host[:port]; expected {USAGE}")
    if m.group("port") is not None and not 1 <= int(m.group("port")) <= 65535:
        raise ZooError(f"{what} {text!r}: port {m.group('port')} is out of range")
    tag = digest = None
    if "@" in path:
        repo, digest = path.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ZooError(f"{what} {text!r}: {digest!r} is not sha256: and 64 lowercase hex digits")
    else:
        repo, colon, tag = path.rpartition(":")
        if not colon:
            raise ZooError(f"{what} {text!r}: no tag; expected {USAGE}")
        if not _TAG.fullmatch(tag):
            raise ZooError(f"{what} {text!r}: {tag!r} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")
    if len(repo) > 255 or not _REPO.fullmatch(repo):
        raise ZooError(f"{what} {text!r}: {repo!r} is not a valid repository name (lowercase letters, digits, "
                       "separators '.', '_', '-', components joined by '/')")
    return Reference(host, repo, tag, digest)


def safe_relpath(rel, what: str) -> str:
    """A path that a registry or a pulled manifest names, refused unless it is a plain relative path
    (normalized, forward slashes, no '.'/'..'/empty parts, a conservative character set, bounded length):
    joined to any folder, it stays inside it. Pure; symlinks are the writer's concern (fresh folder)."""
    if not isinstance(rel, str) or not rel:
        raise ZooError(f"{what}: an empty or non-text path ({rel!r}); refusing it")
    parts = rel.split("/")
    if len(rel) > 1024 or len(parts) > 32 or not all(_PATH_PART.fullmatch(p) for p in parts):
        raise ZooError(f"{what}: path {rel[:200]!r} is not a plain relative path inside its folder; refusing it")
    return rel


# --------------------------------------------------------------------------- descriptors and manifests

@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict, hash=False)

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE)

    def to_dict(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


def _annotations(d, where: str) -> dict:
    a = d.get("annotations", {})
    if a is None:
        a = {}
    if not isinstance(a, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in a.items()):
        raise RegistryError(f"{where}: 'annotations' must map text to text")
    return a


def parse_descriptor(d, where: str) -> Descriptor:
    if not isinstance(d, dict):
        raise RegistryError(f"{where}: a descriptor must be an object")
    mt, dg, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(mt, str) or not _MEDIA_TYPE.fullmatch(mt):
        raise RegistryError(f"{where}: mediaType {str(mt)[:80]!r} is not a media type")
    if not isinstance(dg, str) or not _DIGEST.fullmatch(dg):
        raise RegistryError(f"{where}: digest {str(dg)[:80]!r} is not sha256: and 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_BYTES:
        raise RegistryError(f"{where}: size {str(size)[:40]!r} is not an integer from 0 to {MAX_BLOB_BYTES}")
    return Descriptor(mt, dg, size, _annotations(d, where))


@dataclass(frozen=True)
class OciManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict = field(default_factory=dict, hash=False)

    def to_bytes(self) -> bytes:
        """The canonical bytes (fixed key order, no whitespace): the same release gives the same digest."""
        d = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.config.to_dict(),
             "layers": [x.to_dict() for x in self.layers]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return json.dumps(d, separators=(",", ":"), ensure_ascii=True).encode()

    def by_title(self) -> dict[str, Descriptor]:
        return {x.title: x for x in self.layers}


def parse_manifest(data: bytes, where: str = "registry manifest") -> OciManifest:
    """An OCI image manifest from a registry, validated: every layer has a distinct, safe title."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise RegistryError(f"{where}: {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")
    try:
        d = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RegistryError(f"{where}: not JSON ({type(e).__name__})") from None
    if not isinstance(d, dict):
        raise RegistryError(f"{where}: not a JSON object")
    if d.get("schemaVersion") != 2 or isinstance(d.get("schemaVersion"), bool):
        raise RegistryError(f"{where}: schemaVersion {str(d.get('schemaVersion'))[:20]!r} is not 2")
    if d.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise RegistryError(f"{where}: mediaType {str(d.get('mediaType'))[:80]!r} is not an OCI image manifest "
                            "(an index or a Docker image is not a zoo release)")
    config = parse_descriptor(d.get("config"), f"{where}: config")
    layers = d.get("layers")
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_LAYERS:
        raise RegistryError(f"{where}: 'layers' must be a list of 1 to {MAX_LAYERS} descriptors")
    descs = tuple(parse_descriptor(x, f"{where}: layer {i}") for i, x in enumerate(layers))
    titles = set()
    for i, x in enumerate(descs):
        title = safe_relpath(x.title, f"{where}: layer {i} title")
        if title in titles:
            raise RegistryError(f"{where}: two layers are titled {title!r}")
        titles.add(title)
    return OciManifest(config, descs, _annotations(d, where))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- credentials

def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base).expanduser() if base else Path.home() / ".docker") / "config.json"


def _auth_keys(host: str) -> set[str]:
    return {host, f"https://{host}", f"http://{host}", f"https://{host}/", f"http://{host}/",
            f"https://{host}/v1/", f"https://{host}/v2/", f"http://{host}/v2/"}


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for ``host``: ZOO_REGISTRY_USER/ZOO_REGISTRY_PASSWORD, else the Docker config's
    ``auths`` entry for the host (``auth``: base64 of user:password, or ``username``/``password``);
    None when neither has any (an anonymous registry). Credential helpers are not consulted."""
    user, pw = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if user is not None or pw is not None:
        if not user or pw is None:
            raise ZooError(f"set both {ENV_USER} and {ENV_PASSWORD}, or neither")
        return user, pw
    path = docker_config_path()
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooError(f"cannot read the Docker config {path}: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    auths = cfg.get("auths") if isinstance(cfg, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = _auth_keys(host)
    entry = next((v for k, v in auths.items() if k in keys), None)
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, pw = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ZooError(f"the Docker config {path}: the 'auth' of {host} is not base64 of user:password") from None
        if not sep or not user:
            raise ZooError(f"the Docker config {path}: the 'auth' of {host} is not base64 of user:password")
        return user, pw
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    return None


# --------------------------------------------------------------------------- HTTP

def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {...}); unknown or empty -> ("", {})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'([A-Za-z]+)="([^"]*)"', rest)}
    return scheme.lower(), params


class _SameHostRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects (a registry may send blobs from storage elsewhere) over http(s) only, without
    carrying the Authorization header to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise RegistryError(f"the registry redirected to {newurl[:120]!r}; refusing it")
        if urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


class Registry:
    """One repository on one registry. ``insecure``: plain HTTP (a registry on loopback or a trusted network)."""

    def __init__(self, ref: Reference, insecure: bool = False, timeout: float = 60.0):
        self.ref = ref
        self.host = ref.host
        self.base = f"{'http' if insecure else 'https'}://{ref.host}"
        self.timeout = timeout
        self.creds = credentials(ref.host)
        self._authorization: str | None = None
        self._opener = urllib.request.build_opener(_SameHostRedirect, _ArmedHTTPHandler, _ArmedHTTPSHandler)

    # ---- plumbing
    def _url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base, path)

    def _same_host(self, url: str) -> bool:
        return urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.base).netloc

    def _authenticate(self, challenge: str) -> None:
        if self.creds is None:
            raise RegistryError(f"authentication refused by {self.host}: the registry asks for credentials and none "
                                f"are set (ZOO_REGISTRY_USER/ZOO_REGISTRY_PASSWORD, or `docker login` in {docker_config_path()})")
        user, pw = self.creds
        basic = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        scheme, params = parse_challenge(challenge)
        if scheme == "bearer" and params.get("realm", "").startswith(("https://", "http://")):
            query = {k: params[k] for k in ("service", "scope") if params.get(k)}
            if "scope" not in query:
                query["scope"] = f"repository:{self.ref.repo}:pull,push"
            url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
            req = urllib.request.Request(url, headers={"Authorization": basic})
            try:
                with self._opener.open(req, timeout=self.timeout) as r:
                    body = r.read(1 << 20)
            except urllib.error.HTTPError as e:
                raise RegistryError(f"authentication refused by {self.host} (token service answered HTTP {e.code})") from None
            except (urllib.error.URLError, OSError) as e:
                raise RegistryError(f"token service of {self.host} unreachable: {getattr(e, 'reason', e)}") from None
            try:
                tok = json.loads(body)
                token = tok.get("token") or tok.get("access_token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(f"the token service of {self.host} gave no token")
            self._authorization = f"Bearer {token}"
        else:
            self._authorization = basic

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
                accept=(200,), _retry: bool = True):
        """Send one request; returns the open response for a status in ``accept``.
        Unreachable, refused credentials and unexpected statuses are one-line RegistryErrors."""
        url = path if path.startswith(("http://", "https://")) else self._url(path)
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self._authorization and self._same_host(url):
            req.add_header("Authorization", self._authorization)
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 401 and _retry and self._authorization is None:
                e.close()
                self._authenticate(e.headers.get("WWW-Authenticate", ""))
                return self.request(method, path, data, headers, accept, _retry=False)
            if e.code in accept:
                return e
            detail = _error_detail(e)
            e.close()
            if e.code in (401, 403):
                raise RegistryError(f"authentication refused by {self.host} (HTTP {e.code}{detail}); check "
                                    f"{ENV_USER}/{ENV_PASSWORD} or the Docker config {docker_config_path()}") from None
            raise RegistryError(f"{self.host}: {method} {urllib.parse.urlsplit(url).path} answered HTTP {e.code}{detail}") from None
        except RegistryError:
            raise
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise RegistryError(f"registry {self.host} unreachable ({reason}); is it running, and is it "
                                f"{'plain HTTP' if self.base.startswith('http:') else 'HTTPS (else --insecure for plain HTTP)'}?") from None
        if resp.status not in accept:
            resp.close()
            raise RegistryError(f"{self.host}: {method} {urllib.parse.urlsplit(url).path} answered HTTP {resp.status}")
        return resp

    def _deadline(self, what: str) -> Deadline:
        return Deadline(f"{self.host}: {what}", RegistryError, hint="nothing was written")

    def _read(self, r, limit: int, deadline: Deadline) -> bytes:
        try:
            return _read_under(r, limit, deadline, self.timeout)
        except TransferStalled:
            raise
        except OSError as e:
            raise RegistryError(f"{self.host}: {deadline.what}: the transfer broke off ({e or type(e).__name__})") from None

    def _read1(self, r, size: int, deadline: Deadline) -> bytes:
        try:
            return _read1_under(r, size, deadline, self.timeout)
        except TransferStalled:
            raise
        except OSError as e:
            raise RegistryError(f"{self.host}: {deadline.what}: the transfer broke off after {deadline.bytes} bytes "
                                f"({e or type(e).__name__}); nothing was written") from None

    # ---- the API
    def ping(self) -> None:
        """GET /v2/: reachable, speaks the distribution API, and lets us in."""
        with self.request("GET", "/v2/") as r:
            r.read(1 << 16)

    def manifest_digest(self, tag: str) -> str | None:
        """The digest the tag points at, None when the tag does not exist."""
        with self.request("HEAD", f"/v2/{self.ref.repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST},
                          accept=(200, 404)) as r:
            if r.status == 404:
                return None
            dg = r.headers.get("Docker-Content-Digest", "")
        if _DIGEST.fullmatch(dg):
            return dg
        return sha256_digest(self.get_manifest(tag)[0])

    def get_manifest(self, ref: str) -> tuple[bytes, str]:
        """The manifest's bytes and their digest; a manifest asked for by digest must hash to it."""
        deadline = self._deadline(f"the manifest {ref!r}")
        with self.request("GET", f"/v2/{self.ref.repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST},
                          accept=(200, 404)) as r:
            if r.status == 404:
                raise RegistryError(f"{self.ref.host}/{self.ref.repo}: no manifest {ref!r} (unknown tag or digest)")
            data = self._read(r, MAX_MANIFEST_BYTES + 1, deadline)
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"the manifest {ref!r} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
        digest = sha256_digest(data)
        if _DIGEST.fullmatch(ref) and digest != ref:
            raise BlobMismatch(f"the manifest {ref} from {self.host} hashes to {digest}: it is not the manifest asked for")
        return data, digest

    def put_manifest(self, tag: str, data: bytes) -> str:
        with self.request("PUT", f"/v2/{self.ref.repo}/manifests/{tag}", data=data,
                          headers={"Content-Type": OCI_MANIFEST}, accept=(200, 201)) as r:
            dg = r.headers.get("Docker-Content-Digest", "")
        if dg and dg != sha256_digest(data):
            raise RegistryError(f"{self.host} stored the manifest under {dg}, not its digest {sha256_digest(data)}")
        return sha256_digest(data)

    def has_blob(self, digest: str) -> bool:
        with self.request("HEAD", f"/v2/{self.ref.repo}/blobs/{digest}", accept=(200, 404)) as r:
            return r.status == 200

    def push_blob(self, digest: str, data: bytes) -> None:
        """A monolithic upload: POST for a session, PUT the bytes with their digest (the registry checks it)."""
        with self.request("POST", f"/v2/{self.ref.repo}/blobs/uploads/", data=b"", accept=(202,)) as r:
            location = r.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{self.host} gave no upload location")
        url = self._url(location)
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode({"digest": digest})
        deadline = self._deadline(f"upload of blob {digest[:19]}...")
        try:
            with self.request("PUT", url, data=_chunks(data, deadline),
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
                              accept=(201,)) as r:
                r.read(1 << 16)
        except TransferStalled:
            raise
        except RegistryError:
            deadline.check()  # a send that waited until the floor was crossed: say that, not "unreachable"
            raise

    def fetch_blob(self, desc: Descriptor, dest: Path) -> None:
        """Stream a blob into ``dest`` (a temporary file of the caller), reading at most its declared size
        (plus one byte to notice more), then check its size and sha256. BlobMismatch when they differ."""
        h = hashlib.sha256()
        n = 0
        deadline = self._deadline(f"blob {desc.title or desc.digest}")
        with self.request("GET", f"/v2/{self.ref.repo}/blobs/{desc.digest}") as r, open(dest, "wb") as f:
            while True:
                chunk = self._read1(r, min(1 << 20, desc.size + 1 - n), deadline)
                if not chunk:
                    break
                n += len(chunk)
                h.update(chunk)
                f.write(chunk)
                if n > desc.size:
                    break
        got = "sha256:" + h.hexdigest()
        name = desc.title or desc.digest
        if n != desc.size or got != desc.digest:
            raise BlobMismatch(f"blob {name} from {self.host} fails its digest ({'more than ' if n > desc.size else ''}"
                               f"{n} bytes hashing to {got[:19]}..., expected {desc.size} bytes {desc.digest[:19]}...); "
                               "nothing was written")


class _chunks:
    """``data`` in pieces for an upload, each sent under ``deadline`` (a registry that reads too slowly fails);
    iterable again for a request sent again (after an authentication challenge)."""

    def __init__(self, data: bytes, deadline: Deadline, size: int = 1 << 16):
        self.data, self.deadline, self.size = data, deadline, size

    def __iter__(self):
        for i in range(0, len(self.data), self.size):
            self.deadline.check()
            yield _Piece(self.data[i:i + self.size], self.deadline)
            self.deadline.add(min(self.size, len(self.data) - i))


class _Piece(bytes):
    """One piece of an upload body, carrying its transfer's deadline to the connection that sends it."""

    deadline: Deadline

    def __new__(cls, data: bytes, deadline: Deadline) -> _Piece:
        piece = super().__new__(cls, data)
        piece.deadline = deadline
        return piece


class _ArmedSend:
    """A connection whose send of a :class:`_Piece` waits at most until its deadline's floor is crossed (a
    registry that stops reading fails then, not at the connection's timeout); other sends are unchanged."""

    sock: Any
    timeout: Any

    def send(self, data: Any) -> None:
        if isinstance(data, _Piece) and self.sock is not None:
            self.sock.settimeout(data.deadline.wait(self.timeout))
            try:
                super().send(data)  # type: ignore[misc]
            finally:
                self.sock.settimeout(self.timeout)  # the response is read under the request's own timeout
            return
        super().send(data)  # type: ignore[misc]


class _ArmedHTTPConnection(_ArmedSend, http.client.HTTPConnection):
    pass


class _ArmedHTTPSConnection(_ArmedSend, http.client.HTTPSConnection):
    pass


class _ArmedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_ArmedHTTPConnection, req)


class _ArmedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_ArmedHTTPSConnection, req, context=self._context)


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The first error code of a distribution error body (``{"errors": [{"code": ...}]}``), for the one line."""
    try:
        body = json.loads(e.read(1 << 16) or b"{}")
        code = body["errors"][0]["code"]
        return f" {code}" if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,40}", code) else ""
    except Exception:  # any body: the detail is a courtesy
        return ""
