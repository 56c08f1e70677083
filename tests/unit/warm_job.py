"""A worker for the warm-process tests: what it does is in the job."""
from __future__ import annotations

import os
import signal
import sys
import time

from zoo.core.isolation import worker_main


def run(job: dict) -> dict:
    print(f"job {job['do']} in {os.getpid()}", flush=True)
    if job["do"] == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if job["do"] == "hang":
        time.sleep(3600)
    if job["do"] == "raise":
        raise RuntimeError("the job failed")
    if job["do"] == "exit":
        os._exit(3)
    if job["do"] == "slow":  # a warm-up: slow imports, remembered by the process
        time.sleep(1.0)
        os.environ["WARMED"] = "1"
    if job["do"] == "launched?":  # started through a launcher prefix (zoo.core.isolation)?
        return {"ok": True, "via": os.environ.get("ZOO_TEST_VIA"), "launcher": os.environ.get("ZOO_LAUNCHER")}
    if job["do"] == "nested":  # a worker starting a worker: the prefix is passed on
        from pathlib import Path

        from zoo.core.isolation import run_isolated

        return run_isolated("warm_job", [], {"do": "launched?"}, Path(job["work"]), 60, "inner")
    if job["do"] == "warmed?":
        return {"ok": True, "pid": os.getpid(), "warmed": os.environ.get("WARMED") == "1"}
    return {"ok": True, "pid": os.getpid()}


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:], run))
