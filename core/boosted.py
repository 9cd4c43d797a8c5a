"""``BoostedModel``: what ``boost`` returns; serves each batch on its backend, falls back, ships."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .artifact_dir import write_artifact_dir
from .backends import get_backend
from .breaker import DeadlineRunner, Fallback, Guard
from .config import BoostConfig
from .dispatch import NATIVE, Buckets, Built, DispatchTable, Route, batch_of, run_buckets
from .loadshare import BusyBoard
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
        timeout = config.call_timeout_s
        self._deadline = DeadlineRunner(self.name, timeout) if timeout > 0 else None
        self._gauged: set[str] = set()
        self._series: dict[tuple[str, str], metrics.Series] = {}  # INFERENCE_MS, see _timed
        self._routes = {NATIVE: self._route(NATIVE, None, {})}
        self._routes[self._primary] = self._route(self._primary, compiled, artifact_dirs or {})
        for name, (buckets, dirs) in (extras or {}).items():
            self._routes[name] = self._route(name, buckets, dirs)
        self._table = DispatchTable(self._routes, self._primary, self._dispatch)
        self._native_only = all(r.compiled is None for r in self._routes.values())
        self._wide: dict[str, Buckets] = {}  # backend -> its every-core copy (follow_load)
        self._board: BusyBoard | None = None
        # Entered around every call the framework serves (a plugin that keeps the framework's
        # own thread pool small while compiled backends serve gives it back there).
        self.native_scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
        with self._lock:
            self._refresh()

    def _route(self, name: str, compiled: Buckets | None, dirs: Mapping[int | None, Path]) -> Route:
        guard = Guard(name, self.config, where=self.name, model=self.name, deadline=self._deadline,
                      on_change=self._refresh, lock=self._lock, log=logger)
        return Route(name, compiled, dict(dirs), guard)

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
            with self.native_scope():
                result = self.handle.call_native(*args, **kwargs)
            self._timed(NATIVE, t0)
            return result
        feeds = self.handle.feeds_from_call(args, kwargs)
        return self.handle.wrap_outputs(self.run(feeds), args, kwargs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on named numpy feeds; return outputs in ``output_names`` order."""
        return self.run_answered(feeds)[0]

    def run_answered(self, feeds: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], str]:
        """Like :meth:`run`, with the backend that answered this call (``native`` on a fallback).

        ``backend`` says what serves now; a call that failed on it and fell back was answered
        by the framework even while the breaker stays closed. A server that names the backend
        in its response takes it from here.
        """
        self.handle.check_feeds(feeds)
        route = self._table.pick(batch_of(feeds) if self.handle.batched and feeds else 1)
        if self._board is None:
            return self._serve(route, route.compiled, feeds)
        with self._board.busy() as alone:
            wide = self._wide.get(route.backend) if alone else None
            return self._serve(route, wide or route.compiled, feeds)

    def follow_load(self, wide: Mapping[str, Buckets], board: BusyBoard) -> None:
        """Serve ``wide``'s backends on their every-core copies while no other worker is busy.

        ``wide`` maps a serving backend to its artifacts loaded again with every core;
        ``board`` is the host's busy board (:mod:`yellowstone.loadshare`), which every call
        of this model marks while it runs.
        """
        self._wide = dict(wide)
        self._board = board

    @property
    def own_thread_pools(self) -> bool:
        """True when every batch size is served by a backend sizing its own thread pool.

        The framework's intra-op pool then runs no part of the model (until a fallback), only
        what a server does around it. See ``Backend.owns_threads``.
        """
        serving = {self._primary, *self._dispatch.values()}
        return NATIVE not in serving and all(
            getattr(get_backend(name), "owns_threads", False) for name in serving)

    @property
    def wide_backends(self) -> tuple[str, ...]:
        """The backends holding an every-core copy for calls made while alone (follow_load)."""
        return tuple(self._wide)

    def _serve(self, route: Route, compiled: Buckets | None,
               feeds: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], str]:
        """Serve ``feeds`` on ``compiled`` (its route's buckets, or their wide copy), or natively.

        Returns the outputs and the backend that answered.
        """
        if compiled is None:
            return self._native(feeds), NATIVE
        t0 = time.perf_counter()
        outputs = route.guard.run(functools.partial(run_buckets, compiled, feeds, self.handle.batched))
        if isinstance(outputs, Fallback):
            route.guard.count(outputs)
            return self._native(feeds), NATIVE
        self._timed(route.backend, t0)
        return outputs, route.backend

    def run_dict(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like :meth:`run`, keyed by output name."""
        return dict(zip(self.output_names, self.run(feeds)))

    def _native(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Serve checked ``feeds`` on the framework, timed like any other call."""
        t0 = time.perf_counter()
        with self.native_scope():
            outputs = self.handle.run(feeds)
        self._timed(NATIVE, t0)
        return outputs

    def _timed(self, backend: str, t0: float) -> None:
        ms = (time.perf_counter() - t0) * 1e3
        series = self._series.get((self.name, backend))
        if series is None:  # one per model name and backend, its labels keyed once
            series = self._series[(self.name, backend)] = metrics.Series(
                metrics.INFERENCE_MS, "ms", model=self.name, backend=backend)
        series.emit(ms)

    def _refresh(self) -> None:
        """Make the report and the in-use gauges say what serves now (called under the lock)."""
        self.report.chosen = self._table.first.serving
        self.report.dispatch = self._table.serving()
        fenced = [r.guard.reason for r in self._routes.values() if not r.healthy and r.guard.reason]
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
