"""Forward yellowstone's metrics to TorchServe's per-worker metrics cache (``context.metrics``).

TorchServe writes what the cache receives to its model metrics log, or serves it on the metrics
API in Prometheus mode (with ``model_metrics_auto_detect=true``). Every ``yellowstone_*`` series
(``yellowstone.serving.telemetry``) is forwarded, named as TorchServe names its own
(``HandlerTime``, ``PredictionTime``): :func:`ts_name`. Each value costs a log line the frontend
parses, so the per-call inference time is sent at most once per ``summary_s`` per backend, as the
mean of the calls since the last one (TorchServe's own ``PredictionTime`` still times every
request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from yellowstone import metrics
from yellowstone.serving import telemetry

logger = logging.getLogger(__name__)


def ts_name(series: telemetry.Series) -> str:
    """A series' TorchServe name: ``yellowstone_backend_in_use`` -> ``YellowstoneBackendInUse``.

    A timing ends in ``Time`` (``yellowstone_compile_seconds`` -> ``YellowstoneCompileTime``);
    a counter drops ``_total``.
    """
    words = series.name.removeprefix("yellowstone_").removesuffix("_total").split("_")
    if series.kind == "timing":
        words[-1] = "time"
    return "Yellowstone" + "".join(w.capitalize() for w in words)


def dimensions(series: telemetry.Series, labels: Mapping[str, str]) -> tuple[str, ...]:
    """The series' labels as TorchServe dimensions (``Backend``), ``model`` left out.

    TorchServe adds its own ``ModelName``. A series the core does not describe takes the labels
    it came with.
    """
    names = series.labels or tuple(sorted(labels))
    return tuple(n.capitalize() for n in names if n != "model")


class TorchServeMetrics(telemetry.MetricsBridge):
    """Writes core metrics into a TorchServe metrics cache, as TorchServe-named metrics.

    ``get_context`` returns the handler's current context (TorchServe hands a context to every
    request); a missing cache (offline precompile) makes the bridge a no-op. Values that arrive
    before the serving backend is known (compile and load times, during the boost) are held and
    labelled with it by :meth:`flush`. Per-call inference times are summarised: the first is
    sent, then one mean per backend every ``summary_s`` seconds at most. TorchServe fixes a
    metric's dimensions the first time it is added: each name keeps those it was first sent with.
    """

    def __init__(self, get_context: Callable[[], Any], backend: Callable[[], str],
                 summary_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._get_context = get_context
        self._backend = backend
        self._held: list[tuple[str, str, float, str, dict[str, str]]] = []
        self._summary_s = summary_s
        self._clock = clock
        self._timings: dict[str, list[float]] = {}  # backend -> [calls, total, last sent]
        self._dimensions: dict[str, tuple[str, ...]] = {}  # TorchServe name -> its dimensions

    def record(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Forward one value of any series under its TorchServe name (a gauge's 0 too)."""
        series = telemetry.describe(name, unit)
        target = ts_name(series)
        dims = self._dimensions.setdefault(target, dimensions(series, labels))
        labels = dict(labels)
        if "Backend" in dims and "backend" not in labels:
            backend = self._backend()
            if backend == "pending":  # compile/load time arrives before the boost returns
                self._held.append((target, series.kind, value, unit, labels))
                return
            labels["backend"] = backend
        if name == metrics.INFERENCE_MS:
            self._summarise(target, float(value), unit, labels)
        else:
            self.emit(target, series.kind, value, unit, labels)

    def _summarise(self, target: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Add one call's time; send the mean when ``summary_s`` has passed for this backend."""
        backend = labels["backend"]
        now = self._clock()
        entry = self._timings.get(backend)
        if entry is None:  # the first call is sent at once
            self._timings[backend] = [0, 0.0, now]
            self.emit(target, "timing", value, unit, labels)
            return
        entry[0] += 1
        entry[1] += value
        if now - entry[2] >= self._summary_s:
            mean = entry[1] / entry[0]
            entry[:] = [0, 0.0, now]
            self.emit(target, "timing", mean, unit, labels)

    def flush(self) -> None:
        """Emit what arrived before the serving backend was known, labelled with it now."""
        held, self._held = self._held, []
        for target, kind, value, unit, labels in held:
            self.emit(target, kind, value, unit, {**labels, "backend": self._backend()})

    def emit(self, target: str, kind: str, value: float, unit: str,
             labels: Mapping[str, str]) -> None:
        """Write one value of a ``kind`` series as TorchServe's ``target``; never fail the caller.

        ``kind`` is a :class:`~yellowstone.serving.telemetry.Series` kind.
        """
        ctx = self._get_context()
        cache = getattr(ctx, "metrics", None) if ctx is not None else None
        if cache is None:
            return
        try:
            from ts.metrics.dimension import Dimension
            from ts.metrics.metric_type_enum import MetricTypes

            dims = [Dimension(d, str(labels.get(d.lower(), "-"))) for d in self._dimensions.get(target, ())]
            if kind == "counter":
                cache.add_counter(target, value, None, dims)
            elif kind == "timing":
                cache.add_time(target, round(float(value), 4), None, "s" if unit == "s" else "ms", dims)
            else:
                cache.add_metric(target, value, "count", None, dims, MetricTypes.GAUGE)
        except Exception:  # noqa: BLE001 - metrics must never break serving
            logger.debug("could not emit TorchServe metric %s", target, exc_info=True)
