"""A loopback mirror of the original repository for the tests: http.server on 127.0.0.1 serving a folder
laid out as the repository (each file at its path there), counting every request; it can cut a file
short and stall (to test resumed and interrupted downloads)."""
from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        path = urllib.parse.unquote(self.path.lstrip("/"))
        with srv.lock:
            srv.requests.append(path)
        cut = srv.cut.get(path)
        if cut is None:
            return super().do_GET()
        # announce the whole file, send `cut` bytes, then stall (if asked) and drop the connection
        data = (Path(self.directory) / path).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:cut])
        self.wfile.flush()
        srv.stall.wait(10)
        self.close_connection = True


class Server:
    def __init__(self, root: Path):
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root))
        )
        self.httpd.daemon_threads = True
        self.httpd.requests, self.httpd.cut, self.httpd.lock = [], {}, threading.Lock()
        self.httpd.stall = threading.Event()
        self.httpd.stall.set()  # no stall unless a test clears it
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def requests(self) -> list[str]:
        return list(self.httpd.requests)

    def close(self):
        self.httpd.stall.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    """A port nothing listens on (an offline mirror)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
