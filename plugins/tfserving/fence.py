"""One signature's shim fenced off when it fails or hangs: the core's circuit breaker and deadline."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from yellowstone import metrics
from yellowstone.breaker import Breaker, DeadlineRunner, Overdue
from yellowstone.errors import BadRequestError, YellowstoneError

from .artifacts import TENSORFLOW
from .errors import ServingError

if TYPE_CHECKING:
    from yellowstone import BoostConfig

logger = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]
# What a shim call may raise that TensorFlow can answer instead (MemoryError: YS_ERR_NOMEM).
SHIM_FAILURES = (YellowstoneError, RuntimeError, ValueError, TypeError, OSError, MemoryError)


class Fallback(NamedTuple):
    """Why TensorFlow serves a request the shim would: ``reason`` as the core counts it."""

    reason: str  # shape | runtime | deadline | breaker-open
    detail: str


class ShimFence:
    """Calls one signature's shim under ``call_timeout_s`` and a :class:`~yellowstone.breaker.Breaker`.

    As the core's ``BoostedModel`` does for a compiled backend: a call past its deadline is
    answered by TensorFlow while it finishes in the background, and new requests go to
    TensorFlow until it returns; ``max_runtime_failures`` failures in a row open the breaker,
    and after the back-off one trial call goes to the shim again (success closes it and counts
    ``yellowstone_recoveries_total``, failure reopens it for twice as long). Each episode is
    logged once; ``yellowstone_backend_in_use`` names what serves the signature now. The
    fallback itself is counted by the caller, once TensorFlow has answered the request.

    Args:
        where: ``"<model> v<version> [<signature>]"``, for the log.
        labels: ``model``, ``version`` and ``signature``, for the gauge.
        backend: the shim's backend (``openvino`` / ``onnxruntime``).
        config: the servable's BoostConfig (breaker and deadline settings).
        deadline: the servable's deadline runner (None: ``call_timeout_s`` is off).
    """

    def __init__(self, where: str, labels: Mapping[str, str], backend: str, config: BoostConfig,
                 deadline: DeadlineRunner | None):
        self.where, self.labels, self.backend = where, dict(labels), backend
        self.timeout_s = config.call_timeout_s
        self.breaker = Breaker(config.max_runtime_failures, config.breaker_backoff_s,
                               config.breaker_backoff_max_s)
        self.stalled: set[concurrent.futures.Future[Any]] = set()
        self._deadline = deadline
        self._lock = threading.Lock()
        self._gauged = ""
        self._closed = False
        self._on_idle: Callable[[], None] | None = None
        with self._lock:
            self._refresh()

    @property
    def healthy(self) -> bool:
        """True when requests go to the shim now."""
        return self.breaker.state == "closed" and not self.stalled

    @property
    def serving(self) -> str:
        """What answers this signature's requests now: the shim's backend or ``tensorflow``."""
        return self.backend if self.healthy else TENSORFLOW

    # -- calling ----------------------------------------------------------------------------
    def run(self, call: Callable[[], Outputs]) -> Outputs | Fallback:
        """The shim's answer to ``call()``, or why TensorFlow must answer the request instead.

        A :class:`~.errors.ServingError` (the batch queue's answer) reaches the client as it is.
        """
        kind = "call" if self.healthy else self._admit()
        if kind is None:
            if self.stalled:
                return Fallback("deadline", f"a call past its {self.timeout_s:g} s deadline is still running")
            return Fallback("breaker-open", "its circuit breaker is open")
        trial = kind == "trial"
        try:
            outputs = call() if self._deadline is None else self._deadline.call(call)
        except Overdue as late:
            self._overdue(late.future, trial)
            return Fallback("deadline", f"the call passed its {self.timeout_s:g} s deadline")
        except (ServingError, BadRequestError) as exc:  # the request's fault, not the shim's
            with self._lock:
                self.breaker.abandon(trial)
            if isinstance(exc, ServingError):
                raise
            return Fallback("shape", str(exc))
        except SHIM_FAILURES as exc:
            what = f"{type(exc).__name__}: {exc}"
            self._runtime_failure(what, trial)
            return Fallback("runtime", what)
        if trial or self.breaker.failures:
            self._success(trial)
        return outputs

    def _admit(self) -> str | None:
        """The slow path of a fenced-off shim: ``"trial"`` (this request tries it) or None."""
        with self._lock:
            kind = None if self.stalled else self.breaker.admit()
        if kind == "trial":
            logger.info("%s: trying the shim (%s) again (breaker half-open)", self.where, self.backend)
        return kind

    # -- bookkeeping --------------------------------------------------------------------------
    def _runtime_failure(self, what: str, trial: bool) -> None:
        first = not trial and self.breaker.failures == 0
        logger.log(logging.WARNING if first else logging.DEBUG,
                   "%s: the shim (%s) failed at run time (%s); TensorFlow serves this request",
                   self.where, self.backend, what)
        self._failed(trial, f"failed {self.breaker.threshold} times in a row at run time; last error: "
                            f"{what}" if not trial else f"still fails at run time; last error: {what}")

    def _overdue(self, future: concurrent.futures.Future[Any], trial: bool) -> None:
        """Fence the shim off until the slow call returns; log once per episode."""
        with self._lock:
            first = not self.stalled
            self.stalled.add(future)
            if first:
                self._refresh()
        if first:
            logger.warning("%s: a shim (%s) call passed its %g s deadline; it and new requests are "
                           "served by TensorFlow until it returns", self.where, self.backend, self.timeout_s)
        self._failed(trial, f"missed its {self.timeout_s:g} s deadline")
        future.add_done_callback(self._returned)

    def _returned(self, future: concurrent.futures.Future[Any]) -> None:
        """A call past its deadline came back: the shim serves again unless its breaker is open."""
        with self._lock:
            self.stalled.discard(future)
            back = not self.stalled
            if back:
                self._refresh()
            healthy, on_idle = self.healthy, self._on_idle if back else None
        if back:
            error = future.exception()
            logger.info("%s: the slow shim (%s) call returned%s; %s", self.where, self.backend,
                        f" with {type(error).__name__}: {error}" if error else "",
                        "the shim serves again" if healthy else "its breaker is open")
        if on_idle is not None:
            on_idle()

    def _failed(self, trial: bool, why: str) -> None:
        """Tell the breaker; log once when it opens (again: INFO)."""
        with self._lock:
            opened = self.breaker.failure(trial)
            if opened:
                self._refresh()
            backoff = self.breaker.backoff
        if opened == "opened":
            logger.warning("%s: circuit breaker for the shim (%s) open: it %s; TensorFlow serves, next "
                           "trial in %g s", self.where, self.backend, why, backoff)
        elif opened == "reopened":
            logger.info("%s: the shim (%s) trial failed; breaker open again, next trial in %g s",
                        self.where, self.backend, backoff)

    def _success(self, trial: bool) -> None:
        with self._lock:
            recovered = self.breaker.success(trial)
            if recovered:
                self._refresh()
        if recovered:
            logger.info("%s: the shim (%s) recovered: the trial call succeeded; it serves again",
                        self.where, self.backend)
            metrics.emit(metrics.RECOVERIES, 1, model=self.labels.get("model", ""), backend=self.backend)

    def _refresh(self) -> None:
        """Point the in-use gauge at what serves now, none once closed (called under the lock)."""
        now = "" if self._closed else self.serving
        if now == self._gauged:
            return
        if self._gauged:
            metrics.emit(metrics.BACKEND_IN_USE, 0, "gauge", **self.labels, backend=self._gauged)
        if now:
            metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", **self.labels, backend=now)
        self._gauged = now

    def close(self, close_shim: Callable[[], None]) -> None:
        """Clear the gauge and call ``close_shim`` now, or once the last slow call returns."""
        with self._lock:
            self._closed = True
            self._refresh()
            if self.stalled:
                self._on_idle = close_shim
                return
        close_shim()
