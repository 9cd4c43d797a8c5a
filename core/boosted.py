"""``BoostedModel``: what ``boost`` returns; serves each batch on its backend, falls back, ships."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .artifact_dir import write_artifact_dir
from .breaker import Breaker, DeadlineRunner, Overdue
from .config import BoostConfig
from .dispatch import NATIVE, Buckets, Built, DispatchTable, Route, batch_of, run_buckets
from .errors import BadRequestError
from .model import ModelHandle
from .report import Report
from .spec import TensorSpec

__all__ = ["BoostedModel", "Buckets", "Built", "run_buckets"]

logger = logging.getLogger(__name__)


class BoostedModel:
    """A model served by the backends ``boost`` chose; called exactly like the original.

    ``run(feeds)`` is the numpy entry point the server plugins use; ``__call__`` takes and
    returns what the original model takes and returns. A request goes to the backend that won
    the nearest served batch size at or above its batch (``report.dispatch``). A failing
    compiled call is served by the framework instead, logged and counted; after
    ``max_runtime_failures`` in a row that backend's circuit breaker opens (see
    :class:`~yellowstone.config.BoostConfig`), and with ``call_timeout_s`` a call past its
    deadline is answered by the framework while it finishes in the background. Every call is
    timed (``yellowstone_inference_ms``) under the backend that answered it, ``native`` included.
    ``report.chosen`` and ``report.dispatch`` always name what serves now. ``scratch`` holds
    temporary directories the compiled models live in (caching off): they are removed when the
    model is garbage-collected. :meth:`save` writes a portable artifact directory
    (:mod:`yellowstone.artifact_dir`).
    """

    def __init__(self, handle: ModelHandle, compiled: Buckets | None, report: Report,
                 config: BoostConfig, artifact_dirs: Mapping[int | None, Path] | None = None,
                 *, scratch: Sequence[tempfile.TemporaryDirectory[str]] = (),
                 extras: Mapping[str, Built] | None = None):
        self.handle = handle
        self.report = report
        self.config = config
        self._compiled = compiled  # the first size's backend (None: native)
        self._scratch = tuple(scratch)
        self._lock = threading.Lock()
        self.name = report.model
        self._primary = report.chosen if compiled is not None else NATIVE
        self._note = report.fallback_reason  # the boost's own fallback reason, if any
        self._dispatch = dict(report.dispatch)  # as decided: batch size -> backend
        self._routes = {NATIVE: self._route(NATIVE, None, {})}
        self._routes[self._primary] = self._route(self._primary, compiled, artifact_dirs or {})
        for name, (buckets, dirs) in (extras or {}).items():
            self._routes[name] = self._route(name, buckets, dirs)
        self._table = DispatchTable(self._routes, self._primary, self._dispatch)
        self._native_only = all(r.compiled is None for r in self._routes.values())
        timeout = config.call_timeout_s
        self._deadline = DeadlineRunner(self.name, timeout) if timeout > 0 else None
        self._gauged: set[str] = set()
        with self._lock:
            self._refresh()

    def _route(self, name: str, compiled: Buckets | None, dirs: Mapping[int | None, Path]) -> Route:
        cfg = self.config
        return Route(name, compiled, dict(dirs), Breaker(
            cfg.max_runtime_failures, cfg.breaker_backoff_s, cfg.breaker_backoff_max_s))

    # -- what serves ------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend serving the first batch size now (``native`` while fenced off)."""
        return self.report.chosen

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Named input specs (dim 0 dynamic when the model is batched)."""
        return self.handle.inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names, in output order."""
        return self.handle.output_names

    def route_for(self, batch: int) -> str:
        """The backend a request of ``batch`` rows is dispatched to (before any fallback)."""
        return self._table.pick(batch).backend

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call like the original model; same argument and result types."""
        if self._compiled is None and self._native_only:
            t0 = time.perf_counter()
            result = self.handle.call_native(*args, **kwargs)
            self._timed(NATIVE, t0)
            return result
        feeds = self.handle.feeds_from_call(args, kwargs)
        return self.handle.wrap_outputs(self.run(feeds), args, kwargs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on named numpy feeds; return outputs in ``output_names`` order."""
        self.handle.check_feeds(feeds)
        route = self._table.pick(batch_of(feeds) if self.handle.batched and feeds else 1)
        if route.compiled is None:
            return self._native(feeds)
        kind = "call" if route.healthy else self._admit(route)
        if kind is None:
            return self._native(feeds)
        trial = kind == "trial"
        t0 = time.perf_counter()
        try:
            outputs = self._call(route.compiled, feeds)
        except BadRequestError:
            with self._lock:
                route.breaker.abandon(trial)
            raise
        except Overdue as late:
            self._overdue(route, late.future, trial)
            return self._native(feeds)
        except Exception as exc:  # noqa: BLE001 - any backend failure falls back for this call
            self._runtime_failure(route, exc, trial)
            return self._native(feeds)
        if trial or route.breaker.failures:
            self._success(route, trial)
        self._timed(route.backend, t0)
        return outputs

    def run_dict(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like :meth:`run`, keyed by output name."""
        return dict(zip(self.output_names, self.run(feeds)))

    def _call(self, compiled: Buckets, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on ``compiled``; under ``call_timeout_s``, raise Overdue when the deadline passes."""
        run = functools.partial(run_buckets, compiled, feeds, self.handle.batched)
        return run() if self._deadline is None else self._deadline.call(run)

    def _native(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Serve checked ``feeds`` on the framework, timed like any other call."""
        t0 = time.perf_counter()
        outputs = self.handle.run(feeds)
        self._timed(NATIVE, t0)
        return outputs

    def _timed(self, backend: str, t0: float) -> None:
        metrics.emit(metrics.INFERENCE_MS, (time.perf_counter() - t0) * 1e3, "ms",
                     model=self.name, backend=backend)

    # -- fallback bookkeeping ---------------------------------------------------------------
    def _admit(self, route: Route) -> str | None:
        """The slow path of a fenced-off route: a trial call, or None (counted) for native."""
        with self._lock:
            reason = "deadline" if route.stalled else "breaker-open"
            kind = None if route.stalled else route.breaker.admit()
        if kind == "trial":
            logger.info("%s: trying %s again (breaker half-open)", self.name, route.backend)
        elif kind is None:
            metrics.emit(metrics.FALLBACKS, 1, model=self.name, backend=route.backend,
                         reason=reason)
        return kind

    def _runtime_failure(self, route: Route, exc: BaseException, trial: bool) -> None:
        what = f"{type(exc).__name__}: {exc}"
        logger.log(logging.INFO if trial else logging.WARNING,
                   "%s: %s failed at run time (%s); this call is served by native",
                   self.name, route.backend, what)
        metrics.emit(metrics.FALLBACKS, 1, model=self.name, backend=route.backend,
                     reason="runtime")
        self._failed(route, trial, f"{route.backend} failed {self.config.max_runtime_failures} "
                                   f"times in a row at run time; last error: {what}"
                     if not trial else f"{route.backend} still fails at run time; last error: {what}")

    def _overdue(self, route: Route, future: concurrent.futures.Future[Any], trial: bool) -> None:
        """A call passed its deadline: fence the route off until it returns, count, log once."""
        timeout = self.config.call_timeout_s
        with self._lock:
            first = not route.stalled
            route.stalled.add(future)
            if first:
                route.reason = (f"a {route.backend} call passed its {timeout:g} s "
                                "deadline and is still running")
                self._refresh()
        if first:
            logger.warning("%s: %s call passed its %g s deadline; it and new requests for %s are "
                           "served by native until it returns", self.name, route.backend,
                           timeout, route.backend)
        metrics.emit(metrics.FALLBACKS, 1, model=self.name, backend=route.backend,
                     reason="deadline")
        self._failed(route, trial, f"{route.backend} missed its {timeout:g} s deadline")
        future.add_done_callback(functools.partial(self._returned, route))

    def _returned(self, route: Route, future: concurrent.futures.Future[Any]) -> None:
        """A call that passed its deadline came back: the route serves again unless fenced off."""
        with self._lock:
            route.stalled.discard(future)
            back = not route.stalled
            if back:
                self._refresh()
            healthy = route.healthy
        error = future.exception()
        if back:
            logger.info("%s: the slow %s call returned%s; %s", self.name, route.backend,
                        f" with {type(error).__name__}: {error}" if error else "",
                        f"serving on {route.backend} again" if healthy else "its breaker is open")

    def _failed(self, route: Route, trial: bool, why: str) -> None:
        """Tell the breaker; log once when it opens (again: INFO)."""
        with self._lock:
            opened = route.breaker.failure(trial)
            if opened:
                route.reason = why
                self._refresh()
            backoff = route.breaker.backoff
        if opened == "opened":
            logger.warning("%s: circuit breaker for %s open: %s; serving on native, next trial in "
                           "%g s", self.name, route.backend, why, backoff)
        elif opened == "reopened":
            logger.info("%s: %s trial failed; breaker open again, next trial in %g s",
                        self.name, route.backend, backoff)

    def _success(self, route: Route, trial: bool) -> None:
        with self._lock:
            recovered = route.breaker.success(trial)
            if recovered:
                route.reason = ""
                self._refresh()
        if recovered:
            logger.info("%s: %s recovered: the trial call succeeded; serving on it again",
                        self.name, route.backend)
            metrics.emit(metrics.RECOVERIES, 1, model=self.name, backend=route.backend)

    def _refresh(self) -> None:
        """Make the report and the in-use gauges say what serves now (called under the lock)."""
        self.report.chosen = self._table.first.serving
        self.report.dispatch = self._table.serving()
        fenced = [r.reason for r in self._routes.values() if not r.healthy and r.reason]
        self.report.fallback_reason = "; ".join(fenced) or self._note
        in_use = {self.report.chosen, *self.report.dispatch.values()}
        for name in sorted(in_use - self._gauged):
            metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model=self.name, backend=name)
        for name in sorted(self._gauged - in_use):
            metrics.emit(metrics.BACKEND_IN_USE, 0, "gauge", model=self.name, backend=name)
        self._gauged = in_use

    # -- shipping ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Write a portable artifact directory (``yellowstone compile --out``) and return it.

        It holds every dispatched backend's artifacts and the report as decided (not the
        fallback state of the moment).
        """
        report = dataclasses.replace(self.report, chosen=self._primary,
                                     dispatch=dict(self._dispatch), fallback_reason=self._note)
        dirs = {name: r.dirs for name, r in self._routes.items() if name != NATIVE and r.dirs}
        return write_artifact_dir(Path(out_dir), self.handle, report, dirs)
