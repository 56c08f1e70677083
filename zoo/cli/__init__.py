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
from zoo.cli import export as _export  # noqa: E402,F401
from zoo.cli import listing as _listing  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        # disk full, permission denied, ... outside the places that already explain themselves
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(1)
