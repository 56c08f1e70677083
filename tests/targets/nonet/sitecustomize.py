"""Loaded by every Python process of a test run (PYTHONPATH): records and blocks network and pip.

Audit events socket.connect / socket.getaddrinfo and any subprocess or os.system that
mentions pip are written to $ZOO_NONET_LOG and refused with an exception.
"""
import os
import sys

_LOG = os.environ.get("ZOO_NONET_LOG")


def _hook(event, args):
    bad = None
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
        bad = f"{event} {args!r}"
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
        tokens = []

        def flat(a):
            if isinstance(a, (list, tuple)):
                for b in a:
                    flat(b)
            elif isinstance(a, (str, bytes, os.PathLike)):
                tokens.extend(os.fsdecode(a).split())

        flat(args)
        names = [os.path.basename(t) for t in tokens]
        if any(n.startswith("pip") and n.rstrip("0123456789.") == "pip" for n in names):
            bad = f"{event} {' '.join(tokens)[:200]}"
    if bad:
        if _LOG:
            with open(_LOG, "a") as f:
                f.write(f"{os.getpid()} {bad}\n")
        raise RuntimeError(f"blocked by the no-network test: {bad}")


if _LOG:
    sys.addaudithook(_hook)
