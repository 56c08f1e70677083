"""Publish a release folder to a throw-away registry on 127.0.0.1 and pull it back: times, sizes, digests.

    python benchmarks/publish_roundtrip.py RELEASE_DIR [--target mnn --precision int8]

Starts Debian's docker-registry (scripts/install_registry.sh) on a free loopback port with its own
storage, runs `zoo publish` twice (the second must give the same digest and send nothing), `zoo pull`
of everything into an empty folder and of one target, and prints one line per step (wall time of the
command, its transfer time, bytes) and the digests. Each command is this checkout's `python -m zoo`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))

from oci_registry import run_registry  # noqa: E402


def zoo(*args) -> tuple[dict, float]:
    t0 = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "zoo", *map(str, args), "--json"], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if cp.returncode != 0:
        sys.exit(f"zoo {' '.join(map(str, args))}: exit {cp.returncode}\n{cp.stderr[-2000:]}")
    return json.loads(cp.stdout), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("release", type=Path)
    ap.add_argument("--target", default="mnn")
    ap.add_argument("--precision", default="int8")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zoo-roundtrip-") as td, run_registry(Path(td) / "registry") as (host, _):
        ref = f"oci://{host}/ultraface/release:v1"
        p1, w1 = zoo("publish", a.release, "--to", ref, "--insecure")
        p2, w2 = zoo("publish", a.release, "--to", ref, "--insecure")
        full, w3 = zoo("pull", ref, "--out", Path(td) / "full", "--insecure")
        part, w4 = zoo("pull", ref.replace(":v1", "@" + p1["digest"]), "--out", Path(td) / "part", "--insecure",
                       "--target", a.target, "--precision", a.precision)
        print(f"{'step':<34} {'wall s':>7} {'verify s':>8} {'transfer s':>10} {'bytes':>10} {'blobs sent':>10}")
        print(f"{'publish (first)':<34} {w1:7.2f} {p1['verify_seconds']:8.2f} {p1['push_seconds']:10.2f} "
              f"{p1['bytes_sent']:10d} {p1['blobs_pushed']:10d}")
        print(f"{'publish (again, same tag)':<34} {w2:7.2f} {p2['verify_seconds']:8.2f} {p2['push_seconds']:10.2f} "
              f"{p2['bytes_sent']:10d} {p2['blobs_pushed']:10d}")
        for name, (r, w) in ((f"pull (all, {len(full['pull']['files'])} files)", (full, w3)),
                             (f"pull ({a.target} {a.precision}, {len(part['pull']['files'])} files)", (part, w4))):
            ok = "verify passed" if r["verify"]["passed"] else "VERIFY FAILED"
            print(f"{name:<34} {w:7.2f} {r['pull']['verify_seconds']:8.2f} {r['pull']['pull_seconds']:10.2f} "
                  f"{r['pull']['bytes']:10d} {'':>10} {ok}")
        print(f"release: {len(p1['layers'])} layers, {p1['total_bytes']} bytes; OCI manifest {p1['manifest_bytes']} bytes")
        print(f"digest (first push)  {p1['digest']}")
        print(f"digest (second push) {p2['digest']}  {'same' if p1['digest'] == p2['digest'] else 'DIFFERENT'}")
        print(f"digest (pull records) {full['pull']['digest']}")


if __name__ == "__main__":
    main()
