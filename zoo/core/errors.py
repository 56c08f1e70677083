"""The one user-error type, and the suggestion used in its messages."""
from __future__ import annotations

import difflib


class ZooError(Exception):
    """A user error: one clear line, exit 1, no traceback."""


def nearest(name: str, choices) -> str:
    """' (did you mean X?)' or '' — a suggestion, never a silent replacement."""
    close = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.4)
    return f" (did you mean {close[0]!r}?)" if close else ""
