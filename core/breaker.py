"""Fencing off a failing or hanging backend: a circuit breaker, a deadline executor, a guarded path."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import metrics
from .errors import BadRequestError

if TYPE_CHECKING:
    from .config import BoostConfig

T = TypeVar("T")

logger = logging.getLogger(__name__)


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


class Fallback(NamedTuple):
    """Why the fallback answers a call the guarded path would: ``reason`` as the metrics count it."""

    reason: str  # runtime | deadline | breaker-open (a plugin may add its own, e.g. shape)
    detail: str


def _nothing() -> None:
    pass


class Guard:
    """One compiled path behind a :class:`Breaker` and, optionally, a :class:`DeadlineRunner`.

    ``run(call)`` returns ``call()``'s result, or a :class:`Fallback` saying why the fallback
    (the framework: ``native``, TensorFlow) must answer instead. A failure (an instance of
    ``failures``) counts for the breaker: ``max_runtime_failures`` in a row open it, and after
    the back-off one trial call goes to the path again (success closes it and counts
    ``yellowstone_recoveries_total``, failure reopens it for twice as long). A call past its
    deadline counts too, finishes in the background, and fences the path off until it returns.
    Any other exception (a :class:`~yellowstone.errors.BadRequestError`: the request's fault)
    reaches the caller without counting, and a trial it interrupted is retried by the next
    request. Each episode is logged once through ``log``; ``on_change`` is called under ``lock``
    whenever what serves changes (to refresh the ``yellowstone_backend_in_use`` gauges); the
    caller counts a fallback with :meth:`count` when it chooses (at once, or once answered).

    Args:
        backend: the path's backend (the ``backend`` label).
        config: the breaker and deadline settings.
        where: what the log lines start with (the model, or a plugin's own name for it).
        model: the ``model`` label.
        subject: how the log names the path (default: ``backend``).
        fallback: what serves while the path is fenced off (:attr:`serving`).
        instead: how the log names ``fallback`` (default: ``fallback``).
        deadline: the runner that bounds each call (None: ``call_timeout_s`` is off).
        on_change: called under ``lock`` when the path is fenced off or serves again.
        lock: the lock ``on_change`` needs (shared by paths that refresh one state); default: own.
        failures: what a call may raise that the fallback can answer instead.
        warn_each_failure: WARNING for each failed call (INFO for a trial); False: only for the
            first of a run, DEBUG after it.
        log: the logger the episodes are told on.
    """

    def __init__(self, backend: str, config: BoostConfig, *, where: str, model: str, subject: str = "",
                 fallback: str = "native", instead: str = "", deadline: DeadlineRunner | None = None,
                 on_change: Callable[[], None] = _nothing, lock: threading.Lock | None = None,
                 failures: tuple[type[BaseException], ...] = (Exception,), warn_each_failure: bool = True,
                 log: logging.Logger = logger):
        self.backend, self.where, self.model = backend, where, model
        self.subject, self.fallback, self.instead = subject or backend, fallback, instead or fallback
        self.breaker = Breaker(config.max_runtime_failures, config.breaker_backoff_s,
                               config.breaker_backoff_max_s)
        self.deadline, self.timeout_s = deadline, config.call_timeout_s
        self.lock = lock or threading.Lock()
        self.failures, self.warn_each_failure, self.log = failures, warn_each_failure, log
        self.stalled: set[concurrent.futures.Future[Any]] = set()  # calls past their deadline
        self.reason = ""  # why it is fenced off now
        self._on_change = on_change
        self._idle: list[Callable[[], None]] = []  # to call once no call is past its deadline

    @property
    def healthy(self) -> bool:
        """True when calls go to the path now."""
        return self.breaker.state == "closed" and not self.stalled

    @property
    def serving(self) -> str:
        """What answers the path's calls now: ``backend`` or ``fallback``."""
        return self.backend if self.healthy else self.fallback

    # -- calling ----------------------------------------------------------------------------
    def run(self, call: Callable[[], T]) -> T | Fallback:
        """``call()``'s result, or why the fallback must answer instead (not counted yet)."""
        kind = "call" if self.healthy else self._admit()
        if isinstance(kind, Fallback):
            return kind
        trial = kind == "trial"
        try:
            result = call() if self.deadline is None else self.deadline.call(call)
        except Overdue as late:
            return self._overdue(late.future, trial)
        except BaseException as exc:
            if isinstance(exc, BadRequestError) or not isinstance(exc, self.failures):
                with self.lock:  # the request's fault, not the path's: a trial proved nothing
                    self.breaker.abandon(trial)
                raise
            return self._runtime_failure(exc, trial)
        if trial or self.breaker.failures:
            self._success(trial)
        return result

    def count(self, fallback: Fallback) -> None:
        """Count a call the fallback answered (``yellowstone_fallbacks_total``)."""
        metrics.emit(metrics.FALLBACKS, 1, model=self.model, backend=self.backend, reason=fallback.reason)

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` now, or once the last call past its deadline has returned."""
        with self.lock:
            if self.stalled:
                self._idle.append(fn)
                return
        fn()

    def _admit(self) -> str | Fallback:
        """The slow path of a fenced-off path: ``"trial"`` (this call tries it), or why not."""
        with self.lock:
            stalled = bool(self.stalled)
            kind = None if stalled else self.breaker.admit()
        if kind == "trial":
            self.log.info("%s: trying %s again (breaker half-open)", self.where, self.subject)
        if kind is not None:
            return kind
        if stalled:
            return Fallback("deadline", f"a call past its {self.timeout_s:g} s deadline is still running")
        return Fallback("breaker-open", "its circuit breaker is open")

    # -- bookkeeping --------------------------------------------------------------------------
    def _runtime_failure(self, exc: BaseException, trial: bool) -> Fallback:
        what = f"{type(exc).__name__}: {exc}"
        if self.warn_each_failure:
            level = logging.INFO if trial else logging.WARNING
        else:
            level = logging.WARNING if not trial and not self.breaker.failures else logging.DEBUG
        self.log.log(level, "%s: %s failed at run time (%s); this call is served by %s",
                     self.where, self.subject, what, self.instead)
        self._failed(trial, f"{self.subject} still fails at run time; last error: {what}" if trial else
                     f"{self.subject} failed {self.breaker.threshold} times in a row at run time; "
                     f"last error: {what}")
        return Fallback("runtime", what)

    def _overdue(self, future: concurrent.futures.Future[Any], trial: bool) -> Fallback:
        """A call passed its deadline: fence the path off until it returns; log once per episode."""
        timeout = self.timeout_s
        with self.lock:
            first = not self.stalled
            self.stalled.add(future)
            if first:
                self.reason = (f"a call to {self.subject} passed its {timeout:g} s deadline and is "
                               "still running")
                self._on_change()
        if first:
            self.log.warning("%s: %s call passed its %g s deadline; it and new requests for %s are served "
                             "by %s until it returns", self.where, self.subject, timeout, self.subject,
                             self.instead)
        self._failed(trial, f"{self.subject} missed its {timeout:g} s deadline")
        future.add_done_callback(self._returned)
        return Fallback("deadline", f"the call passed its {timeout:g} s deadline")

    def _returned(self, future: concurrent.futures.Future[Any]) -> None:
        """A call past its deadline came back: the path serves again unless its breaker is open."""
        with self.lock:
            self.stalled.discard(future)
            back = not self.stalled
            idle: list[Callable[[], None]] = []
            if back:
                self._on_change()
                idle, self._idle = self._idle, []
            healthy = self.healthy
        if back:
            error = future.exception()
            self.log.info("%s: the slow call to %s returned%s; %s", self.where, self.subject,
                          f" with {type(error).__name__}: {error}" if error else "",
                          f"serving on {self.subject} again" if healthy else "its breaker is open")
        for fn in idle:
            fn()

    def _failed(self, trial: bool, why: str) -> None:
        """Tell the breaker; log once when it opens (again: INFO)."""
        with self.lock:
            opened = self.breaker.failure(trial)
            if opened:
                self.reason = why
                self._on_change()
            backoff = self.breaker.backoff
        if opened == "opened":
            self.log.warning("%s: circuit breaker for %s open: %s; serving on %s, next trial in %g s",
                             self.where, self.subject, why, self.instead, backoff)
        elif opened == "reopened":
            self.log.info("%s: %s trial failed; breaker open again, next trial in %g s",
                          self.where, self.subject, backoff)

    def _success(self, trial: bool) -> None:
        with self.lock:
            recovered = self.breaker.success(trial)
            if recovered:
                self.reason = ""
                self._on_change()
        if recovered:
            self.log.info("%s: %s recovered: the trial call succeeded; serving on it again",
                          self.where, self.subject)
            metrics.emit(metrics.RECOVERIES, 1, model=self.model, backend=self.backend)
