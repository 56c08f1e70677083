"""Headless Chromium driving a test page served from loopback: no driver library, no download.

`serve(routes)` starts an HTTP server on 127.0.0.1 (a free port) serving each route prefix from its folder
(and nothing else) and collecting what the page POSTs to /result; `run_page(url)` starts Debian's
chromium headless on a new empty profile with every background service off, waits for the page's
result and stops the browser. The page reaches nothing but this server (its own origin).
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check", "--mute-audio"]
TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".jpg": "image/jpeg", ".png": "image/png", ".onnx": "application/octet-stream",
         ".bin": "application/octet-stream"}


def chromium() -> str | None:
    """Debian's chromium (scripts/install_chromium.sh), or ZOO_CHROMIUM."""
    return os.environ.get("ZOO_CHROMIUM") or shutil.which("chromium")


class Server:
    def __init__(self, routes: dict[str, Path]):
        self.routes = {k: Path(v).resolve() for k, v in routes.items()}
        self.results: list = []
        self.requests: list[str] = []
        self._got = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
                outer.requests.append(path)
                for prefix, root in outer.routes.items():
                    if path.startswith(prefix):
                        f = (root / path[len(prefix):]).resolve()
                        if (f == root or root in f.parents) and f.is_file():
                            data = f.read_bytes()
                            self.send_response(200)
                            self.send_header("Content-Type", TYPES.get(f.suffix, "application/octet-stream"))
                            self.send_header("Content-Length", str(len(data)))
                            self.send_header("Cache-Control", "no-store")
                            self.end_headers()
                            self.wfile.write(data)
                            return
                self.send_error(404)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                self.send_response(204)
                self.end_headers()
                if self.path == "/result":
                    outer.results.append(json.loads(body))
                    outer._got.set()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait(self, timeout: float) -> dict | None:
        return self.results[0] if self._got.wait(timeout) else None


def run_page(server: Server, page: str, timeout: float = 300.0) -> tuple[dict | None, str]:
    """Open ``page`` (a path on ``server``) in headless Chromium; (the page's POSTed result or None, the
    end of the browser's log)."""
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="zoo-chromium-") as profile:
        log = Path(profile) / "chromium.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}/data", server.url + page],
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            result = server.wait(timeout)
        finally:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait()
            time.sleep(0.2)
        tail = " | ".join(l for l in log.read_text(errors="replace").splitlines()[-5:] if "dbus" not in l)
    return result, tail
