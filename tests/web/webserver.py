"""The browser test's page server: `Server(routes)` serves each route prefix from its folder (and nothing
else) on 127.0.0.1 (a free port) and collects what the page POSTs to /result. A page needs an http origin
(ES modules, fetch and WebAssembly are refused to file:// pages); the browser is the suite's one driver,
tests/browser.py (headless Chromium over the DevTools pipe). The page reaches nothing but this server.
"""
from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from pathlib import Path

TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".jpg": "image/jpeg", ".png": "image/png", ".onnx": "application/octet-stream",
         ".bin": "application/octet-stream"}


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
