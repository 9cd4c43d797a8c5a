"""The lazy-boost state machine every proxy shares: one boost, call counters, the one fallback record.

States: pending -(first eligible call)-> boosting -> boosted | native | failed; a change of
weights or mode (``reset``) takes boosted or native back to pending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .. import metrics
from .capture import held_warnings
from .state import current_settings, inside

logger = logging.getLogger(__name__)


class Boostable:
    """Lazy boost state of one proxied model: the boosted model, counters, the report entry."""

    def __init__(self, api: str, source: str):
        self.api = api
        self.source = source
        self.boosted: Any = None
        self.state = "pending"  # pending | boosting | boosted | native | failed
        self.reason = ""
        self.calls = {"boosted": 0, "original": 0, "rejected": 0, "runtime": 0}
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # held through a boost
        self._count_lock = threading.Lock()  # counters: never wait for a boost to finish

    def reset(self, why: str) -> None:
        """Forget the boosted model (weights or mode changed); the next eligible call re-boosts."""
        with self._lock:
            if self.state in ("boosted", "native"):
                logger.info("yellowstone: %s model changed (%s); it is boosted again on its "
                            "next inference call", self.api, why)
                self.boosted, self.state = None, "pending"

    def get(self, make: Callable[[], Any]) -> Any:
        """The boosted model, boosting now if this is the first eligible call; None = original."""
        if self.state == "boosted":
            boosted = self.boosted
            return boosted if boosted is not None and boosted.backend != "native" else None
        if self.state != "pending" or not self._lock.acquire(blocking=False):
            return None  # failed, native, or another thread is boosting: the original serves
        try:
            if self.state != "pending":
                return self.get(make) if self.state == "boosted" else None
            self.state = "boosting"
            self._boost(make)
        finally:
            self._lock.release()
        return self.get(make) if self.state == "boosted" else None

    def _boost(self, make: Callable[[], Any]) -> None:
        from .. import engine  # noqa: F401 - creates the core's loggers before capturing

        with held_warnings() as held:
            try:
                with inside():
                    boosted = make()
            except Exception as exc:  # noqa: BLE001 - any failure: the original keeps serving
                self._failed(exc)
                return
        self._settle(boosted)
        for record in held:  # the core's per-candidate warnings, as detail
            logger.info("yellowstone: detail: %s", record.getMessage())
        settings = current_settings()
        if settings.report_path:
            from .report import write_report

            write_report(settings.report_path)

    def _failed(self, exc: Exception) -> None:
        self.state, self.reason = "failed", f"{type(exc).__name__}: {exc}"
        logger.warning("yellowstone: %s model %s not boosted (%s); the original serves",
                       self.api, self.source, self.reason)
        metrics.emit(metrics.FALLBACKS, 1, model=self.source, backend="none", reason="boost")

    def _settle(self, boosted: Any) -> None:
        self.boosted = boosted
        report = boosted.report
        if boosted.backend == "native":
            self.state = "native"
            self.reason = report.fallback_reason or "native is the fastest here"
            level = logging.WARNING if report.fallback_reason else logging.INFO
            logger.log(level, "yellowstone: %s model %s not boosted (%s); the original serves",
                       self.api, self.source, self.reason)
        else:
            self.state = "boosted"
            speed = f"{report.speedup:.2f}x native" if report.speedup else "speedup unknown"
            logger.info("yellowstone: %s model served by %s (%s)", self.api, boosted.backend,
                        speed)

    def count(self, key: str) -> None:
        """Count one call served by ``key`` (``boosted`` or ``original``)."""
        with self._count_lock:
            self.calls[key] = self.calls.get(key, 0) + 1

    def fallback(self, reason: str, exc: BaseException) -> None:
        """Record one call the boosted model did not serve: log it, count it in the metric.

        The first fallback of each ``reason`` logs a WARNING, later ones DEBUG (a serving loop
        must not flood the log); every one is counted in ``yellowstone_fallbacks_total``.
        """
        boosted = self.boosted
        backend = boosted.backend if boosted is not None else "none"
        with self._count_lock:
            self.calls[reason] = self.calls.get(reason, 0) + 1
            first = reason not in self._warned
            self._warned.add(reason)
        logger.log(logging.WARNING if first else logging.DEBUG,
                   "yellowstone: %s model %s: %s did not serve a call (%s: %s: %s); the original "
                   "serves it%s", self.api, self.source, backend, reason, type(exc).__name__, exc,
                   "; further ones are logged at DEBUG" if first else "")
        metrics.emit(metrics.FALLBACKS, 1, model=getattr(boosted, "name", self.source),
                     backend=backend, reason=reason)

    def _calls(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self.calls)

    def to_dict(self) -> dict[str, Any]:
        """One model's entry in the ``--report`` file."""
        report = self.boosted.report if self.boosted is not None else None
        return {"api": self.api, "source": self.source, "state": self.state,
                "backend": (self.boosted.backend if self.boosted is not None else "original"),
                "speedup": report.speedup if report else None, "reason": self.reason,
                "calls": self._calls(), "report": report.to_dict() if report else None}
