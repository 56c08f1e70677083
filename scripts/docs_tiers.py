"""Write (``--write``) or check (default) docs/parity.md's tolerance table against the code's RULES.

    .venv/bin/python scripts/docs_tiers.py [--write]

The table sits between validation/parity.py's README_BEGIN and README_END lines; tests/unit/test_tiers.py
runs the same check. After changing a tier in validation/parity.py, run this with --write.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.validation.parity import README_BEGIN, README_END, readme_tiers_block, tiers_markdown  # noqa: E402


def main(argv: list[str]) -> int:
    readme = ROOT / "docs" / "parity.md"
    text = readme.read_text()
    block = readme_tiers_block(text)
    if block is None:
        print(f"error: {readme} has no {README_BEGIN!r} ... {README_END!r} block", file=sys.stderr)
        return 1
    want = tiers_markdown()
    if block == want:
        print("docs/parity.md's tolerance table equals RULES")
        return 0
    if "--write" not in argv:
        print("error: docs/parity.md's tolerance table differs from RULES; run scripts/docs_tiers.py --write", file=sys.stderr)
        return 1
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_BEGIN}\n{want}\n{README_END}{tail}")
    print("docs/parity.md's tolerance table rewritten from RULES")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
