"""A thread pool that runs the queued call of highest priority first: the job slots of a run.

A release builds its models side by side in one pool of ``--jobs`` slots: a model's jobs are queued
with its rank (lower runs first; ties in the order queued), so the model with the longest chain of
work (the largest input: its int8 calibration) gets a free slot first, and the others fill the slots
it leaves idle while its jobs wait for each other.

    with PriorityPool(2) as pool:
        fut = pool.submit(0, fn, *args)   # a concurrent.futures.Future

Nothing here runs a converter: each call is a worker process's parent thread (zoo.core.isolation).
"""
from __future__ import annotations

import heapq
import itertools
import threading
from concurrent.futures import Future


class PriorityPool:
    def __init__(self, workers: int):
        self._heap: list = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self.cancelled = False  # closed with its queue dropped: the run was interrupted
        self._threads = [threading.Thread(target=self._loop, name=f"slot-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    def submit(self, priority, fn, *args) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            heapq.heappush(self._heap, (priority, next(self._seq), fut, fn, args))
            self._cv.notify()
        return fut

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, fut, fn, args = heapq.heappop(self._heap)
            if not fut.set_running_or_notify_cancel():  # cancelled while queued
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - the caller gets it from the future
                fut.set_exception(e)

    def close(self, cancel: bool = False) -> None:
        """No more calls (``submit`` raises); with ``cancel`` the queued ones are dropped (their futures
        raise CancelledError). The running ones go on; the slots end when the queue is empty."""
        with self._cv:
            self._closed = True
            self.cancelled = self.cancelled or cancel
            queued, self._heap = (self._heap, []) if cancel else ([], self._heap)
            self._cv.notify_all()
        for _, _, fut, _, _ in queued:
            fut.cancel()

    def shutdown(self, cancel: bool = False) -> None:
        """`close`, then wait for the calls still running (and, without ``cancel``, the queued ones)."""
        self.close(cancel)
        for t in self._threads:
            t.join()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        self.shutdown(cancel=exc_type is not None)
        return False
