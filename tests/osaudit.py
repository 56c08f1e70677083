"""The operating-system-level network audit of the tests: a command and every process it starts, run
under ``strace -f``, native code included.

What it records, across the whole tree of processes and threads:

* every ``connect`` and every datagram or message sent (``sendto``, ``sendmsg``, ``sendmmsg``) to an
  address that is not loopback (127.0.0.0/8, ::1); loopback is excepted by address, as the publish/pull
  tests' registry is;
* every DNS query, whatever the resolver's address (a loopback resolver such as systemd-resolved's
  127.0.0.53 included): the name asked is decoded from the datagram; a name-service daemon reached
  over its local socket (nscd, systemd-resolved's Varlink socket) counts as a lookup too;
* every process started (``execve``), with its command line and parent; a program that installs
  packages (pip) is a finding.

The libraries behave as on a user's machine: the variables by which onnxruntime and openvino-telemetry
detect a CI job (and then stay quiet) are removed from the audited command's environment.

Use::

    from osaudit import os_audit

    with os_audit(tmp_path) as audit:
        cp = audit.run(["node", "run.js"], env=env, timeout=300)   # or Popen(audit.wrap(cmd), env=audit.env(env))
    assert audit.clean, audit.report()
    audit.findings, audit.lookups, audit.processes                  # what it saw

``block_network=True`` makes every ``connect`` and send fail in the kernel's stead (strace's syscall
injection): for tests that provoke a lookup on purpose, so that nothing leaves the machine. ``zoo()`` in
conftest.py runs every CLI command of the suite under this audit (when strace is installed; CI installs
it with scripts/install_strace.sh).
"""
from __future__ import annotations

import codecs
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: the system calls traced: the network ones, process starts, and thread/process creation (to tell
#: which process a thread belongs to)
SYSCALLS = ("connect", "sendto", "sendmsg", "sendmmsg", "execve", "execveat", "clone", "clone3", "fork", "vfork")
NETWORK_SYSCALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
#: variables by which libraries detect a CI job and turn their usage reporting off (onnxruntime 1.32 reads
#: these, openvino-telemetry reads CI, TF_BUILD, JENKINS_URL): removed, so the audit sees a user's machine
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "TF_BUILD", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER")
#: local sockets of name-service daemons: reaching one is a host lookup by proxy
RESOLVER_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket", "/run/systemd/resolve/io.systemd.Resolve")
DNS_PORT = 53
#: programs that install packages: never run by an audited command
INSTALLERS = re.compile(r"^(pip[0-9.]*|easy_install[0-9.]*|ensurepip|uv|conda|mamba|apt|apt-get|npm|yarn|pnpm)$")


def strace_binary() -> str | None:
    return shutil.which("strace")


_USABLE: list[str | None] = []


def missing_reason() -> str | None:
    """Why the audit cannot run here (None when it can): no strace, or strace cannot trace (ptrace or
    seccomp refused, e.g. in a restricted container). Tried once per process."""
    if not _USABLE:
        strace = strace_binary()
        if strace is None:
            _USABLE.append("strace is not installed (apt-get install strace; CI installs it: scripts/install_strace.sh)")
        else:
            try:
                cp = subprocess.run([strace, "-f", "--seccomp-bpf", "-qq", "-e", "trace=execve", "-o", os.devnull, "true"],
                                    capture_output=True, text=True, timeout=60)
                _USABLE.append(None if cp.returncode == 0 else f"strace cannot trace here: {cp.stderr.strip()[-200:]}")
            except (OSError, subprocess.TimeoutExpired) as e:
                _USABLE.append(f"strace cannot trace here: {e}")
    return _USABLE[0]


@dataclass
class Process:
    pid: int
    parent: int | None
    argv: list[str] = field(default_factory=list)  # the last program it executed (inherited when it only forked)

    @property
    def command(self) -> str:
        return _one_line(self.argv)


@dataclass
class Finding:
    pid: int
    command: str
    kind: str  # "lookup" (DNS or a name-service daemon), "contact" (a non-loopback address), "installer"
    target: str  # the name looked up, the address:port contacted, or the program
    syscall: str
    line: str = ""

    def __str__(self) -> str:
        what = {"lookup": "looked up", "contact": "contacted", "installer": "ran the installer"}[self.kind]
        return f"pid {self.pid} ({self.command[:160]}) {what} {self.target} [{self.syscall}]"


# ---------------------------------------------------------------- parsing strace's output

_LINE = re.compile(r"^(\d+) +(\w+)\((.*)$")
_RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]*)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\),.*?inet_pton\(AF_INET6, "([^"]*)"')
_UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=@?"((?:[^"\\]|\\.)*)"')
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
#: -yy's socket annotation of a connected socket: 12<UDP:[10.0.0.2:40000->10.0.0.1:53]>, <TCPv6:[[::1]:5->[::1]:6]>
_PEER = re.compile(r"<(?:TCP|UDP|UDPLITE|SCTP|MPTCP)(?:v6)?:\[[^>]*?->([^>]*)\]>")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)([^=]*)$")
_FD = re.compile(r"(\d+)")
_CLONE_CHILD = re.compile(r"=\s+(\d+)\s*$")


def _unescape(s: str) -> bytes:
    return codecs.escape_decode(s.encode("latin-1", "backslashreplace"))[0]


def _text(s: str) -> str:
    return _unescape(s).decode("utf-8", "replace")


def _is_local(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def dns_query_names(payload: bytes) -> list[str]:
    """The question names of a DNS query (empty when ``payload`` is not one)."""
    if len(payload) < 17 or payload[2] & 0x80:  # too short, or a response
        return []
    qd = int.from_bytes(payload[4:6], "big")
    names, i = [], 12
    for _ in range(min(qd, 8)):
        labels = []
        while i < len(payload):
            n = payload[i]
            i += 1
            if n == 0:
                break
            if n & 0xC0:  # compression in a query: stop here
                return names
            labels.append(payload[i:i + n].decode("ascii", "replace"))
            i += n
        if labels:
            qtype = int.from_bytes(payload[i:i + 2], "big") if i + 2 <= len(payload) else 0
            names.append(".".join(labels) + {1: " (A)", 28: " (AAAA)", 65: " (HTTPS)"}.get(qtype, f" (type {qtype})"))
        i += 4
    return names


def _result(line: str):
    """(return value, the rest: errno, INJECTED) of a complete line, else None."""
    return _RESULT.search(line)


def _joined_lines(path: Path):
    """strace's lines with ``<unfinished ...>`` / ``<... resumed>`` pairs joined (several threads interleave)."""
    pending: dict[int, str] = {}
    with open(path, encoding="latin-1") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = _RESUMED.match(line)
            if m:
                tid = int(m.group(1))
                yield pending.pop(tid, f"{tid} {m.group(2)}(") + m.group(3)
                continue
            if line.endswith("<unfinished ...>"):
                m = re.match(r"^(\d+) ", line)
                if m:
                    pending[int(m.group(1))] = line[: -len("<unfinished ...>")].rstrip()
                continue
            yield line
    yield from pending.values()  # a call still blocked when the process ended


class _Trace:
    """One strace log, parsed: processes, threads and network events."""

    def __init__(self, path: Path):
        self.thread_of: dict[int, int] = {}  # thread id -> the id of the thread that created it (same process)
        self.parent: dict[int, int] = {}  # process id -> parent process id
        self.argv: dict[int, list[str]] = {}
        self.order: list[int] = []
        self.events: list[tuple[int, str, str]] = []  # (tid, syscall, line)
        root = None
        for line in _joined_lines(path):
            m = _LINE.match(line)
            if not m:
                continue
            tid, call = int(m.group(1)), m.group(2)
            if root is None:
                root = tid
                self._seen(tid)
            if call in ("clone", "clone3", "fork", "vfork"):
                c = _CLONE_CHILD.search(line)
                if c:
                    child = int(c.group(1))
                    if "CLONE_THREAD" in line:
                        self.thread_of[child] = tid
                    else:
                        self.parent[child] = self.process_of(tid)
                        self._seen(child)
            elif call in ("execve", "execveat"):
                r = _result(line)
                if r and r.group(1) == "0":
                    pid = self.process_of(tid)
                    self.argv[pid] = _argv(line)
                    self._seen(pid)
            elif call in NETWORK_SYSCALLS:
                self.events.append((tid, call, line))

    def _seen(self, pid: int) -> None:
        if pid not in self.order:
            self.order.append(pid)

    def process_of(self, tid: int) -> int:
        seen = set()
        while tid in self.thread_of and tid not in seen:
            seen.add(tid)
            tid = self.thread_of[tid]
        return tid

    def argv_of(self, pid: int) -> list[str]:
        seen = set()
        while pid not in self.argv and pid in self.parent and pid not in seen:
            seen.add(pid)
            pid = self.parent[pid]
        return self.argv.get(pid, [])

    def processes(self) -> list[Process]:
        return [Process(p, self.parent.get(p), self.argv_of(p)) for p in self.order]

    def installer_processes(self) -> set[int]:
        """The processes that run an installer (pip, ...), and every process they started."""
        marked = {p for p in self.order if INSTALLERS.match(_program(self.argv_of(p)) or "")}
        for p in self.order:  # parents are seen before their children
            if self.parent.get(p) in marked:
                marked.add(p)
        return marked

    def findings(self) -> list[Finding]:
        out = []
        peers: dict[tuple[int, int], tuple[str, int]] = {}  # (process, fd) -> the address its socket was connected to
        for tid, call, line in self.events:
            pid = self.process_of(tid)
            cmd = _one_line(self.argv_of(pid))
            fd = _FD.match(line[line.find("(") + 1:])
            key = (pid, int(fd.group(1))) if fd else None
            explicit = _addresses(line)
            if call == "connect" and key and explicit:
                peers[key] = explicit[0]
            for kind, target in _classify(call, line, explicit or _peer(line) or ([peers[key]] if key in peers else [])):
                out.append(Finding(pid, cmd, kind, target, call, line[:400]))
        for p in self.processes():
            prog = _program(p.argv)
            if prog and INSTALLERS.match(prog):
                out.append(Finding(p.pid, p.command, "installer", prog, "execve"))
        return out


def _one_line(argv: list[str], width: int = 300) -> str:
    return re.sub(r"\s+", " ", " ".join(argv)).strip()[:width]


def _argv(line: str) -> list[str]:
    """The argument list of an ``execve(path, [arg, ...], env)`` line."""
    start = line.find(", [")
    if start < 0:
        return []
    out, i = [], start + 3
    while i < len(line) and line[i] != "]":
        if line[i] == '"':
            m = _STRING.match(line, i)
            if not m:
                break
            out.append(_text(m.group(1)))
            i = m.end()
        else:
            i += 1
    return out


def _program(argv: list[str]) -> str | None:
    """The program a command line runs: ``pip`` for ``python -m pip ...`` too."""
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if re.match(r"^python[0-9.]*$", name) and "-m" in argv[1:-1]:
        return argv[argv.index("-m", 1) + 1].split(".")[0]
    return name


def _addresses(line: str) -> list[tuple[str, int]]:
    """The IPv4/IPv6 socket addresses written out in a line (connect's, sendto's, sendmsg's msg_name)."""
    return [(h, int(p)) for p, h in _INET.findall(line)] + [(h, int(p)) for p, h in _INET6.findall(line)]


def _peer(line: str) -> list[tuple[str, int]]:
    """The peer of a connected socket as -yy annotates it."""
    return [(h.strip("[]"), int(p)) for h, _, p in (d.rpartition(":") for d in _PEER.findall(line)) if p.isdigit()]


def _classify(call: str, line: str, dests: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """What a network system call to ``dests`` did that the audit reports: [(kind, target)]."""
    r = _result(line)
    found: list[tuple[str, str]] = []
    for m in _UNIX.finditer(line):
        path = _text(m.group(1))
        # a daemon answered (a real connect, not one the audit faked): glibc asks nscd for hosts and users alike
        if path in RESOLVER_SOCKETS and call == "connect" and r and r.group(1) == "0" and "INJECTED" not in r.group(2):
            found.append(("lookup", f"via the name-service daemon socket {path}"))
    families = set(_FAMILY.findall(line)) - {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_UNSPEC"}
    for fam in sorted(families):
        found.append(("contact", f"a socket of family {fam}"))
    for host, port in dests:
        if port == DNS_PORT:
            names = [n for s in _STRING.findall(line) for n in dns_query_names(_unescape(s))]
            if names:
                found += [("lookup", f"{n} (DNS to {host}:{port})") for n in names]
                continue
            if call == "connect":  # the resolver's socket: its queries follow (reported with their names)
                continue
        if not _is_local(host):
            found.append(("contact", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"))
    return found


# ---------------------------------------------------------------- the audit


class OsAudit:
    """An audit of the commands run through it (``run`` or ``wrap``); read it after the ``with`` block."""

    def __init__(self, folder: Path, block_network: bool = False, keep_logs: bool = False,
                 allow_installers: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.block_network = block_network
        self.keep_logs = keep_logs
        self.allow_installers = allow_installers
        self.logs: list[Path] = []
        self.processes: list[Process] = []
        self.findings: list[Finding] = []
        self.excepted: list[Finding] = []  # what installers did, with ``allow_installers``
        self.finished = False

    def wrap(self, cmd: list) -> list[str]:
        """``cmd`` prefixed with strace (one log per command)."""
        why = missing_reason()
        if why:
            raise RuntimeError(why)
        strace = strace_binary()
        fd, log = tempfile.mkstemp(prefix="strace-", suffix=".log", dir=self.folder)
        os.close(fd)
        self.logs.append(Path(log))
        pre = [strace, "-f", "--seccomp-bpf", "-qq", "-x", "-yy", "-s", "1024", "-e", "trace=" + ",".join(SYSCALLS),
               "-o", log]
        if self.block_network:
            pre += ["-e", "inject=connect:retval=0", "-e", "inject=sendto,sendmsg,sendmmsg:error=ENETUNREACH"]
        return [*pre, "--", *map(str, cmd)]

    @staticmethod
    def env(base: dict | None = None) -> dict:
        """``base`` (default: this process's environment) without the CI-detection variables."""
        e = dict(os.environ if base is None else base)
        for k in CI_VARIABLES:
            e.pop(k, None)
        return e

    def run(self, cmd: list, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` of ``cmd`` under the audit (``env`` as ``self.env(env)``)."""
        return subprocess.run(self.wrap(cmd), env=self.env(env), **kw)

    def finish(self) -> OsAudit:
        if self.finished:
            return self
        for log in self.logs:
            t = _Trace(log)
            self.processes += t.processes()
            installers = t.installer_processes() if self.allow_installers else set()
            for f in t.findings():
                (self.excepted if f.pid in installers else self.findings).append(f)
            if not self.keep_logs and not self.findings:
                log.unlink(missing_ok=True)
        self.finished = True
        return self

    @property
    def clean(self) -> bool:
        return not self.finish().findings

    @property
    def lookups(self) -> list[str]:
        return sorted({f.target for f in self.finish().findings if f.kind == "lookup"})

    @property
    def contacts(self) -> list[str]:
        return sorted({f.target for f in self.finish().findings if f.kind == "contact"})

    def programs(self) -> list[str]:
        return sorted({_program(p.argv) or "?" for p in self.finish().processes})

    def report(self, limit: int = 12) -> str:
        self.finish()
        head = (f"OS audit: {len(self.processes)} processes, {len(self.findings)} findings"
                f" (logs: {', '.join(str(l) for l in self.logs if l.exists()) or 'removed'})")
        lines = [str(f) for f in self.findings[:limit]]
        if len(self.findings) > limit:
            lines.append(f"... {len(self.findings) - limit} more")
        return "\n".join([head, *lines])


@contextmanager
def os_audit(folder: Path, block_network: bool = False, keep_logs: bool = False, allow_installers: bool = False):
    """``with os_audit(folder) as audit:`` run commands through ``audit.run`` / ``audit.wrap``; after the
    block ``audit.clean``, ``audit.findings``, ``audit.processes``, ``audit.report()``.

    ``block_network``: connects and sends are faked or refused (nothing leaves; what was tried is still
    reported). ``allow_installers``: an installer's processes (pip creating a `zoo compat` environment,
    by design) are excepted, by process: every other process is audited as ever."""
    audit = OsAudit(folder, block_network=block_network, keep_logs=keep_logs, allow_installers=allow_installers)
    try:
        yield audit
    finally:
        audit.finish()
