"""A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry), started on
127.0.0.1 on a free port with its own storage folder and config file (never the system service), and
stopped when the block ends."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

BINARY = "docker-registry"
INSTALL_HINT = "install Debian's docker-registry package (apt-get install -y docker-registry; .ci/run does)"


def registry_binary() -> str | None:
    return shutil.which(BINARY) or next((p for p in ("/usr/bin/docker-registry",) if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_registry(workdir: Path, htpasswd: str | None = None, storage: Path | None = None, timeout: float = 20.0):
    """Yield (host:port, storage folder) of a registry serving plain HTTP on 127.0.0.1.
    ``htpasswd``: a line ``user:bcrypt-hash``: the registry then asks for Basic credentials.
    ``storage``: another registry's storage folder to serve (default: a new one in ``workdir``)."""
    binary = registry_binary()
    assert binary, INSTALL_HINT
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = Path(storage) if storage is not None else workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd:
        (workdir / "htpasswd").write_text(htpasswd + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: zoo-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: zoo-test-secret\n"
        + auth
    )
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the registry exited ({proc.returncode}): {(workdir / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError as e:  # 401: up, with auth
                if e.code == 401:
                    break
                raise
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the registry did not answer on {host} within {timeout} s") from None
                time.sleep(0.1)
        yield host, storage
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def blob_path(storage: Path, digest: str) -> Path:
    """Where the filesystem driver keeps a blob's bytes."""
    hexd = digest.split(":", 1)[1]
    return storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"
