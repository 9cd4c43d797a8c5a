"""Fencing off a failing or hanging backend: a circuit breaker and a per-call deadline executor."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Breaker:
    """A consecutive-failure circuit breaker: closed -> open -> (after a back-off) one trial.

    ``admit`` says whether a call may go to the backend: ``"call"`` (closed), ``"trial"`` (the
    one half-open call after the back-off) or None (open: serve natively). A trial's success
    closes the breaker and resets the back-off; its failure reopens it for twice as long, up to
    the cap. Not thread-safe by itself: its owner calls it under a lock.
    """

    def __init__(self, threshold: int, backoff_s: float, backoff_max_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold, self.base, self.cap, self.clock = threshold, backoff_s, backoff_max_s, clock
        self.state = "closed"  # closed | open | half-open
        self.failures = 0  # consecutive, while closed
        self.backoff = backoff_s
        self.retry_at = 0.0

    def admit(self) -> str | None:
        """``"call"``, ``"trial"`` (this caller makes the half-open trial) or None (open)."""
        if self.state == "closed":
            return "call"
        if self.state == "open" and self.clock() >= self.retry_at:
            self.state = "half-open"
            return "trial"
        return None

    def success(self, trial: bool) -> bool:
        """Record a call that worked; True when it was the trial that closed the breaker."""
        if trial:
            self.state, self.failures, self.backoff = "closed", 0, self.base
            return True
        if self.state == "closed":
            self.failures = 0
        return False

    def failure(self, trial: bool) -> str | None:
        """Record a failed call; ``"opened"`` or ``"reopened"`` when the breaker (re)opens."""
        if trial:
            self.backoff = min(self.backoff * 2, self.cap)
            self.state, self.retry_at = "open", self.clock() + self.backoff
            return "reopened"
        if self.state != "closed":  # a call admitted before the breaker opened
            return None
        self.failures += 1
        if self.failures < self.threshold:
            return None
        self.state, self.retry_at = "open", self.clock() + self.backoff
        return "opened"

    def abandon(self, trial: bool) -> None:
        """A trial that proved nothing (the client's bad request): the next request retries."""
        if trial and self.state == "half-open":
            self.state = "open"


class Overdue(Exception):
    """A call passed its deadline; ``future`` completes when (if ever) the call returns."""

    def __init__(self, future: concurrent.futures.Future[Any]):
        super().__init__("call past its deadline")
        self.future = future


class DeadlineRunner:
    """Runs calls on daemon worker threads and waits for each at most ``timeout_s``.

    Daemon threads, not a ``ThreadPoolExecutor``: a call that never returns must not block the
    interpreter's exit. Workers start as calls need them; one idle for ``idle_s`` ends.
    """

    def __init__(self, name: str, timeout_s: float, idle_s: float = 60.0):
        self.timeout_s = timeout_s
        self._name, self._idle_s = name, idle_s
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job that no submitted job has claimed
        self._started = 0

    def call(self, fn: Callable[[], T]) -> T:
        """Return ``fn()``; raise :class:`Overdue` when it has not returned by the deadline."""
        future = self.submit(fn)
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            if future.done():  # the call's own TimeoutError: a failure like any other
                raise
            raise Overdue(future) from None

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on a worker; return its future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"yellowstone-{self._name}-{self._started}").start()
        self._jobs.put((future, fn))
        return future

    def _work(self) -> None:
        while True:
            try:
                future, fn = self._jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody counts on this worker: end it
                        self._idle -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                    future.set_exception(exc)
            del future, fn
            with self._lock:
                self._idle += 1
