"""Warm worker processes (zoo.core.isolation.WarmWorkers) keep every guarantee of a fresh process
per job: own log, own timeout, own result; a failed job's process is never reused."""
from __future__ import annotations

import os
from pathlib import Path

from zoo.core.isolation import WarmWorkers

HERE = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_reuse_and_every_failure_restarts(tmp_path):
    with WarmWorkers("warm_job", env_extra={"PYTHONPATH": str(HERE)}) as warm:
        run = lambda do, name, timeout=60: warm.run("fam", {"do": do}, tmp_path, timeout, name)  # noqa: E731
        a = run("ok", "a")
        b = run("ok", "b")
        assert a["ok"] and b["ok"] and a["pid"] == b["pid"]  # warm: the same process
        assert (tmp_path / "a.log").read_text().strip() == f"job ok in {a['pid']}"  # each job its own log
        assert (tmp_path / "b.log").read_text().strip() == f"job ok in {a['pid']}"

        crash = run("crash", "c")
        assert not crash["ok"] and "crashed (SIGSEGV)" in crash["error"] and "job crash" in crash["error"]
        c = run("ok", "c2")
        assert c["ok"] and c["pid"] != a["pid"] and not _alive(a["pid"])

        hang = run("hang", "h", timeout=2)
        assert not hang["ok"] and "timed out after 2 s" in hang["error"]
        d = run("ok", "d")
        assert d["ok"] and d["pid"] != c["pid"] and not _alive(c["pid"])

        boom = run("raise", "r")
        assert not boom["ok"] and boom["error"] == "RuntimeError: the job failed"
        e = run("ok", "e")
        assert e["ok"] and e["pid"] != d["pid"]  # a failed job's process is not trusted again

        gone = run("exit", "x")
        assert not gone["ok"] and "exited with code 3" in gone["error"]
        f = run("ok", "f")
        assert f["ok"]
        other = warm.run("other", {"do": "ok"}, tmp_path, 60, "g")
        assert other["pid"] != f["pid"]  # families never share a process
        assert warm.started == 6  # a, then after each of the four failures, then "other"
    assert not _alive(f["pid"]) and not _alive(other["pid"])  # the run's end stops them all


def test_prestart_hands_its_process_to_the_first_job(tmp_path):
    """A warm-up started ahead (Target.prestart) is waited for and its process reused; a failed one
    leaves nothing behind and the job starts its own process."""
    with WarmWorkers("warm_job", env_extra={"PYTHONPATH": str(HERE)}) as warm:
        warm.prestart("fam", {"do": "slow"}, tmp_path, 60, "w")
        job = warm.run("fam", {"do": "warmed?"}, tmp_path, 60, "j")  # called at once: waits for the warm-up
        assert job["ok"] and job["warmed"] and warm.started == 1
        warm.prestart("bad", {"do": "crash"}, tmp_path, 60, "wb")
        after = warm.run("bad", {"do": "warmed?"}, tmp_path, 60, "jb")
        assert after["ok"] and not after["warmed"] and warm.started == 3
        assert [w["result"]["ok"] for w in sorted(warm.warmups, key=lambda w: w["started"])] == [True, False]
        warm.prestart("unused", {"do": "slow"}, tmp_path, 60, "wu")
    assert not _alive(job["pid"]) and not _alive(after["pid"])
    assert warm.warmups[-1]["family"] == "unused" and warm.warmups[-1]["result"]["ok"]  # ended before close()
