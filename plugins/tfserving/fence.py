"""One signature's shim fenced off when it fails or hangs: the core's guard, with TF Serving's gauge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from yellowstone import metrics
from yellowstone.breaker import DeadlineRunner, Fallback, Guard
from yellowstone.errors import BadRequestError, YellowstoneError

from .artifacts import TENSORFLOW

if TYPE_CHECKING:
    from yellowstone import BoostConfig

__all__ = ["SHIM_FAILURES", "Fallback", "ShimFence"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
# What a shim call may raise that TensorFlow can answer instead (MemoryError: YS_ERR_NOMEM).
SHIM_FAILURES = (YellowstoneError, RuntimeError, ValueError, TypeError, OSError, MemoryError)


class ShimFence(Guard):
    """Calls one signature's shim behind the core's :class:`~yellowstone.breaker.Guard`.

    As the core's ``BoostedModel`` does for a compiled backend (deadline, circuit breaker,
    recovery, each episode logged once), with TensorFlow as the fallback. What is TF Serving's
    own: a :class:`~.errors.ServingError` (the batch queue's answer) reaches the client as it
    is; a :class:`~yellowstone.errors.BadRequestError` is a misfit (``Fallback("shape", ...)``);
    ``yellowstone_backend_in_use`` is per signature and cleared by :meth:`close`. The fallback
    itself is counted by the caller, once TensorFlow has answered the request.

    Args:
        where: ``"<model> v<version> [<signature>]"``, for the log.
        labels: ``model``, ``version`` and ``signature``, for the gauge.
        backend: the shim's backend (``openvino`` / ``onnxruntime``).
        config: the servable's BoostConfig (breaker and deadline settings).
        deadline: the servable's deadline runner (None: ``call_timeout_s`` is off).
    """

    def __init__(self, where: str, labels: Mapping[str, str], backend: str, config: BoostConfig,
                 deadline: DeadlineRunner | None):
        super().__init__(backend, config, where=where, model=labels.get("model", ""),
                         subject=f"the shim ({backend})", fallback=TENSORFLOW, instead="TensorFlow",
                         deadline=deadline, on_change=self._refresh, failures=SHIM_FAILURES,
                         warn_each_failure=False, log=logger)
        self.labels = dict(labels)
        self._gauged = ""
        self._closed = False
        with self.lock:
            self._refresh()

    def run(self, call: Callable[[], T]) -> T | Fallback:
        """The shim's answer to ``call()``, or why TensorFlow must answer the request instead."""
        try:
            return super().run(call)
        except BadRequestError as exc:  # the request does not fit the shim; TensorFlow may take it
            return Fallback("shape", str(exc))

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
        with self.lock:
            self._closed = True
            self._refresh()
        self.when_idle(close_shim)
