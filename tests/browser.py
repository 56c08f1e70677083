"""Headless Chromium driven over the Chrome DevTools protocol on a pipe (``--remote-debugging-pipe``:
messages are JSON, NUL-terminated, on file descriptors 3 and 4), so no port is opened and no websocket
library is needed. Debian's ``chromium`` (scripts/install_chromium.sh); nothing leaves the machine: the
background services are off and every host name resolves to nothing.

    with Chromium() as browser:
        page = browser.open(Path("REPORT.html"))      # file://, waits for the load event
        page.evaluate("document.title")
        png = page.screenshot(full=True)
        page.console_errors, page.requests
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("ZOO_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe"]


def chromium_path() -> str | None:
    p = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    return p


def _high(fd: int) -> int:
    """``fd`` moved to a number >= 10 (the launcher's shell maps it onto 3 or 4)."""
    n = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return n


class Page:
    def __init__(self, browser: "Chromium", session: str):
        self.b, self.session = browser, session
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        return self.b.send(method, params, self.session, timeout)

    def evaluate(self, expr: str, timeout: float = 60.0):
        res = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, timeout)
        if res.get("exceptionDetails"):
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def _mine(self) -> list[dict]:
        return [e for e in self.b.events if e.get("sessionId") == self.session]

    @property
    def console_errors(self) -> list[str]:
        out = []
        for e in self._mine():
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails", {}).get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    @property
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self._mine() if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, full: bool = True, width: int = 1360) -> bytes:
        """A PNG of the page (``full``: its whole height) at ``width`` CSS pixels."""
        height = 900
        if full:
            height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(height, 16000),
                                                         "deviceScaleFactor": 1, "mobile": False})
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, timeout=120)
        return base64.b64decode(shot["data"])


class Chromium:
    def __init__(self, path: str | None = None):
        self.path = path or chromium_path()
        if not self.path:
            raise FileNotFoundError(f"no chromium at {CHROMIUM} (scripts/install_chromium.sh installs it)")
        self.proc = None
        self.events: list[dict] = []
        self._buf = b""
        self._id = 0

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="zoo-chromium-")
        r_in, self.w_in = map(_high, os.pipe())
        self.r_out, w_out = map(_high, os.pipe())
        self.log = open(Path(self.profile) / "stderr.log", "wb")
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:", "HOME": self.profile}
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec 3<&{r_in} 4>&{w_out} {r_in}<&- {w_out}>&-; exec "$@"', "chromium", self.path,
             *FLAGS, f"--user-data-dir={self.profile}/profile", "about:blank"],
            pass_fds=(r_in, w_out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, env=env,
            start_new_session=True)
        os.close(r_in)
        os.close(w_out)
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - already gone or not answering: killed below
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the browser's own process group (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for fd in (self.w_in, self.r_out):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
        self.proc = None

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.r_out], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.r_out, 1 << 22)
        if not chunk:
            raise EOFError("chromium closed its DevTools pipe: " + (Path(self.profile) / "stderr.log").read_text()[-2000:])
        self._buf += chunk
        while b"\0" in self._buf:
            raw, self._buf = self._buf.split(b"\0", 1)
            self.events.append(json.loads(raw))

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0) -> dict:
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w_in, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("id") == mid:
                    del self.events[i]
                    if "error" in e:
                        raise RuntimeError(f"{method}: {e['error']}")
                    return e.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} within {timeout:g} s")
            self._pump(min(left, 1.0))

    def wait_event(self, method: str, session: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout:g} s")
            self._pump(min(left, 1.0))

    def open(self, path: Path, timeout: float = 120.0) -> Page:
        """A new tab showing ``path`` (file://), after its load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1360, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False})
        page.send("Page.navigate", {"url": Path(path).resolve().as_uri()})
        self.wait_event("Page.loadEventFired", session, timeout)
        return page
