"""The `zoo` command line. User errors (ZooError) end as one line on stderr, exit 1."""
from __future__ import annotations

import sys

import typer

from zoo.errors import ZooError

app = typer.Typer(
    name="zoo",
    help="UltraFace face detectors: export to every edge runtime, prove parity, report size and speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from zoo.cli import detect as _detect  # noqa: E402,F401  (registers commands)
from zoo.cli import evaluate as _evaluate  # noqa: E402,F401
from zoo.cli import export as _export  # noqa: E402,F401
from zoo.cli import listing as _listing  # noqa: E402,F401
from zoo.cli import bench as _bench  # noqa: E402,F401
from zoo.cli import release as _release  # noqa: E402,F401


class Interrupted(BaseException):
    """SIGINT/SIGTERM; not a KeyboardInterrupt, so the CLI framework does not swallow it."""


def _interrupt(signum, frame):
    raise Interrupted(signum)


def main() -> None:
    import signal

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt):
        print("error: interrupted; files already in place are complete, a re-run resumes", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        # disk full, permission denied, ... outside the places that already explain themselves
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(1)
