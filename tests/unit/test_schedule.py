"""The job slots a release's models share (zoo/core/schedule.py): highest priority first, ties in the
order queued; a closed pool starts nothing queued or new; a call's exception reaches its future."""
from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from zoo.core.schedule import PriorityPool


def test_one_slot_runs_the_lowest_rank_first_and_ties_in_order_queued():
    ran: list[str] = []
    gate = threading.Event()
    with PriorityPool(1) as pool:
        started = threading.Event()
        first = pool.submit(0, lambda: started.set() or gate.wait())  # holds the only slot while the others queue
        assert started.wait(10)
        futs = [pool.submit(rank, ran.append, name) for rank, name in
                [(2, "c1"), (1, "b1"), (0, "a1"), (2, "c2"), (1, "b2"), (0, "a2")]]
        gate.set()
        for f in [first, *futs]:
            f.result(timeout=10)
    assert ran == ["a1", "a2", "b1", "b2", "c1", "c2"]


def test_two_slots_run_two_calls_at_once():
    both = threading.Barrier(2, timeout=10)
    with PriorityPool(2) as pool:
        futs = [pool.submit(0, both.wait) for _ in range(2)]
        assert sorted(f.result(timeout=10) for f in futs) == [0, 1]  # neither waited for the other to end


def test_close_with_cancel_drops_the_queued_calls_and_refuses_new_ones():
    gate, started = threading.Event(), threading.Event()
    ran: list[int] = []
    pool = PriorityPool(1)
    running = pool.submit(0, lambda: started.set() or gate.wait())
    assert started.wait(10)
    queued = [pool.submit(0, ran.append, i) for i in range(3)]
    assert not pool.cancelled
    pool.close(cancel=True)
    assert pool.cancelled
    with pytest.raises(RuntimeError):
        pool.submit(0, ran.append, 9)
    gate.set()
    pool.shutdown()
    assert running.result() is True
    for f in queued:
        with pytest.raises(CancelledError):
            f.result()
    assert ran == []


def test_a_call_that_raises_fails_only_its_own_future():
    def boom():
        raise ValueError("converter said no")

    with PriorityPool(1) as pool:
        bad, good = pool.submit(0, boom), pool.submit(0, lambda: 42)
        with pytest.raises(ValueError, match="converter said no"):
            bad.result(timeout=10)
        assert good.result(timeout=10) == 42


def test_leaving_the_block_on_an_error_cancels_what_is_queued():
    gate = threading.Event()
    ran: list[int] = []
    started = threading.Event()
    opener = threading.Timer(1.0, gate.set)  # the running call ends a while after the error
    with pytest.raises(KeyError):
        with PriorityPool(1) as pool:
            running = pool.submit(0, lambda: started.set() or gate.wait())
            assert started.wait(10)
            later = pool.submit(0, ran.append, 1)
            opener.start()
            raise KeyError("interrupted")
    assert running.result() is True  # left to finish (its worker process is the caller's to kill)
    with pytest.raises(CancelledError):
        later.result()
    assert ran == []
