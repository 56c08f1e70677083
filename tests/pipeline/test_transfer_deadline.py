"""Issue 32: every transfer has a deadline. A server on 127.0.0.1 that trickles one byte at a time makes
`zoo pull` (its manifest, its blobs) and the pinned fetcher (checkpoints, photos) give up with one line once
the average throughput stays under the floor after the grace period (ZOO_TRANSFER_FLOOR, shortened here so
each case takes about a second), and leaves nothing half-written."""
from __future__ import annotations

import contextlib
import socket
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import assert_clean_error, zoo
from zoo.core import transfer, upstream
from zoo.pipeline import oci
from zoo.core.errors import ZooError
from zoo.pipeline.publish import CONFIG_MEDIA_TYPE

FLOOR = "1000:1"  # 1000 B/s after 1 s: a trickle of 4 B/s fails at ~1 s
TRICKLE_S = 0.25
CONFIG = b'{"schema_version": 1}' * 40
DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": DIGEST, "size": len(CONFIG)},
    "layers": [{"mediaType": "application/octet-stream", "digest": DIGEST, "size": len(CONFIG),
                "annotations": {"org.opencontainers.image.title": "a.bin"}}],
}).encode()


@contextlib.contextmanager
def trickle_server(slow: str, every: float = TRICKLE_S):
    """A loopback HTTP server: the path containing ``slow`` is sent one byte every ``every`` seconds (its
    Content-Length announced in full); everything else at once. Yields host:port."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = MANIFEST if "/manifests/" in self.path else CONFIG if "/blobs/" in self.path else b"x" * 4000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if "/manifests/" in self.path:
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.end_headers()
            try:
                if slow not in self.path:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    if stop.is_set():
                        return
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    stop.wait(every)
            except OSError:
                return  # the client gave up

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with _serving(srv, stop) as host:
        yield host


@contextlib.contextmanager
def _serving(srv: ThreadingHTTPServer, stop: threading.Event):
    """Serve ``srv`` in a thread; yield its host:port; then stop the handlers (``stop``) and the server."""
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("slow", ["/manifests/", "/blobs/"])
def test_pull_from_a_trickling_registry_gives_up_in_one_line(slow, tmp_path):
    with trickle_server(slow, every=20) as host:  # the server: one byte every 20 s
        t0 = time.monotonic()
        cp = zoo("pull", f"oci://{host}/ultraface/rfb-320:v1", "--out", tmp_path / "x", "--insecure",
                 env={transfer.ENV_FLOOR: FLOOR}, timeout=120)
        took = time.monotonic() - t0
    assert_clean_error(cp, "gave up after 1 s", "under the floor of 1000 B/s", transfer.ENV_FLOOR, code=1)
    assert took < 19, took  # the grace period plus the start of a process, not the next byte 20 s later
    assert not (tmp_path / "x").exists()


def _pinned(size: int) -> upstream.PinnedFile:
    return upstream.PinnedFile(local="d/f.bin", remote="f.bin", sha256=hashlib.sha256(b"x" * size).hexdigest(), size=size)


def test_the_fetcher_gives_up_on_a_trickle_and_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(transfer.ENV_FLOOR, FLOOR)
    with trickle_server("f.bin", every=20) as host:  # the server: one byte every 20 s
        t0 = time.monotonic()
        with pytest.raises(transfer.TransferStalled, match=r"download of f.bin .* gave up after 1 s"):
            upstream.fetch([_pinned(4000)], tmp_path, base=f"http://{host}")
        took = time.monotonic() - t0
    assert took < 3, took  # the read waiting for the next byte ends when the floor is crossed, not 20 s later
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # neither f.bin nor its .part


def test_a_transfer_above_the_floor_completes(tmp_path, monkeypatch):
    monkeypatch.setenv(transfer.ENV_FLOOR, FLOOR)
    with trickle_server("nothing-slow") as host:
        upstream.fetch([_pinned(4000)], tmp_path, base=f"http://{host}")
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"x" * 4000


def test_the_floor_setting(monkeypatch):
    monkeypatch.delenv(transfer.ENV_FLOOR, raising=False)
    assert transfer.floor() == (32 * 1024, 30.0)
    monkeypatch.setenv(transfer.ENV_FLOOR, "0")
    assert transfer.floor() == (0.0, 0.0) and not transfer.Deadline("x").expired()
    monkeypatch.setenv(transfer.ENV_FLOOR, "2048")
    assert transfer.floor() == (2048.0, 30.0)
    for bad in ("fast", "-1:3", "1:nan", "1:x"):
        monkeypatch.setenv(transfer.ENV_FLOOR, bad)
        with pytest.raises(ZooError, match="BYTES_PER_SECOND:GRACE_SECONDS"):
            transfer.floor()


@contextlib.contextmanager
def slow_reader_registry(every: float = 0.25):
    """A loopback registry that opens upload sessions at once and then reads a blob's bytes a trickle at a time
    (its socket's receive buffer made small, 16 bytes every ``every`` seconds: 64 B/s). Yields host:port."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.send_response(202)
            self.send_header("Location", "/v2/ultraface/rfb-320/blobs/uploads/u1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_PUT(self):
            left = int(self.headers.get("Content-Length", "0"))
            try:
                while left > 0 and not stop.is_set():
                    got = self.connection.recv(min(16, left))
                    if not got:
                        return
                    left -= len(got)
                    stop.wait(every)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                return  # the client gave up

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
            super().server_bind()

    with _serving(Server(("127.0.0.1", 0), Handler), stop) as host:
        yield host


def test_an_upload_to_a_slow_reading_registry_gives_up_on_time(monkeypatch):
    """`zoo publish`'s blob upload: a registry that reads 64 B/s against a floor of 1 MB/s after 1 s. The
    bytes the kernel buffers go at once; then a send waits for the registry, and that wait ends when the floor
    is crossed (a few seconds), not at the connection's 60 s timeout, with the floor's one line."""
    monkeypatch.setenv(transfer.ENV_FLOOR, "1000000:1")
    data = b"u" * (16 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with slow_reader_registry() as host:
        reg = oci.Registry(oci.parse_reference(f"oci://{host}/ultraface/rfb-320:v1"), insecure=True)
        t0 = time.monotonic()
        with pytest.raises(oci.RegistryError) as e:
            reg.push_blob(digest, data)
        took = time.monotonic() - t0
    msg = str(e.value)
    assert isinstance(e.value, transfer.TransferStalled), msg
    assert "upload of blob sha256:" in msg and "gave up after" in msg and "under the floor of 976.6 KiB/s" in msg, msg
    assert "\n" not in msg
    assert took < 0.5 * reg.timeout, took  # the floor's time (buffered bytes / floor), not the 60 s socket timeout
