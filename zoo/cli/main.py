"""The `zoo` app: commands registered from their modules; user errors (ZooError) end as one line on stderr, exit 1."""
from __future__ import annotations

import signal
import sys

import typer

from zoo.cli import bench, card, check, compat, detect, diff, evaluate, export, listing, publish, release
from zoo.core.errors import ZooError

app = typer.Typer(
    name="zoo",
    help="UltraFace face detectors: export to every edge runtime, prove parity, report size and speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("detect")(detect.detect)
app.command("eval")(evaluate.eval_)
app.command("export")(export.export)
app.command("check")(check.check)
app.command("diff")(diff.diff)
app.command("list")(listing.list_)
app.command("bench")(bench.bench)
app.command("report")(bench.report)
app.command("release")(release.release)
app.command("verify")(release.verify)
app.command("publish")(publish.publish)
app.command("pull")(publish.pull)
app.command("compat")(compat.compat)
app.command("card")(card.card)


class Interrupted(BaseException):
    """SIGINT/SIGTERM; not a KeyboardInterrupt, so the CLI framework does not swallow it."""


def _interrupt(signum, frame):
    raise Interrupted(signum)


def main() -> None:
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
