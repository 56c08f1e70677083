class ZooError(Exception):
    """A user error: one clear line, exit 1, no traceback."""
