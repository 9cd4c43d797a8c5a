"""Forward yellowstone's metrics to TorchServe's per-worker metrics cache (``context.metrics``).

TorchServe writes what the cache receives to its model metrics log, or serves it on the metrics
API in Prometheus mode (with ``model_metrics_auto_detect=true``). Names are CamelCase, as
TorchServe's own (``HandlerTime``, ``PredictionTime``). Each value costs a log line the frontend
parses, so the per-call inference time is sent at most once per ``summary_s`` per backend, as the
mean of the calls since the last one (TorchServe's own ``PredictionTime`` still times every
request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from yellowstone import metrics, serving

logger = logging.getLogger(__name__)

# core metric name -> (TorchServe metric name, kind)
NAMES = {
    metrics.BACKEND_IN_USE: ("YellowstoneBackendInUse", "gauge"),
    metrics.COMPILE_SECONDS: ("YellowstoneCompileTime", "time"),
    metrics.LOAD_SECONDS: ("YellowstoneLoadTime", "time"),
    metrics.FALLBACKS: ("YellowstoneFallbacks", "counter"),
    metrics.INFERENCE_MS: ("YellowstoneInferenceTime", "time"),
}
# TorchServe fixes a metric's dimension names the first time it is added; keep them fixed.
DIMENSIONS = {
    "YellowstoneBackendInUse": ("Backend",),
    "YellowstoneCompileTime": ("Backend",),
    "YellowstoneLoadTime": ("Backend",),
    "YellowstoneFallbacks": ("Backend", "Reason"),
    "YellowstoneInferenceTime": ("Backend",),
}


class TorchServeMetrics(serving.MetricsBridge):
    """Writes core metrics into a TorchServe metrics cache, as TorchServe-named metrics.

    ``get_context`` returns the handler's current context (TorchServe hands a context to every
    request); a missing cache (offline precompile) makes the bridge a no-op. Values that arrive
    before the serving backend is known (compile and load times, during the boost) are held and
    labelled with it by :meth:`flush`. Per-call inference times are summarised: the first is
    sent, then one mean per backend every ``summary_s`` seconds at most.
    """

    def __init__(self, get_context: Callable[[], Any], backend: Callable[[], str],
                 summary_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._get_context = get_context
        self._backend = backend
        self._held: list[tuple[str, str, float, str, dict[str, str]]] = []
        self._summary_s = summary_s
        self._clock = clock
        self._timings: dict[str, list[float]] = {}  # backend -> [calls, total, last sent]

    def record(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Forward one core metric under its TorchServe name (others are not forwarded)."""
        if name not in NAMES:
            return
        if name == metrics.INFERENCE_MS and "backend" in labels:
            self._summarise(float(value), unit, labels)
            return
        ts_name, kind = NAMES[name]
        labels = dict(labels)
        if name == metrics.BACKEND_IN_USE and not value:
            return  # TorchServe gauges are per dimension set: only report the backend serving
        if "backend" not in labels:
            backend = self._backend()
            if backend == "pending":  # compile/load time arrives before the boost returns
                self._held.append((ts_name, kind, value, unit, labels))
                return
            labels["backend"] = backend
        self.emit(ts_name, kind, value, unit, labels)

    def _summarise(self, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Add one call's time; send the mean when ``summary_s`` has passed for this backend."""
        backend = labels["backend"]
        now = self._clock()
        entry = self._timings.get(backend)
        if entry is None:  # the first call is sent at once
            self._timings[backend] = [0, 0.0, now]
            self.emit("YellowstoneInferenceTime", "time", value, unit, labels)
            return
        entry[0] += 1
        entry[1] += value
        if now - entry[2] >= self._summary_s:
            mean = entry[1] / entry[0]
            entry[:] = [0, 0.0, now]
            self.emit("YellowstoneInferenceTime", "time", mean, unit, labels)

    def flush(self) -> None:
        """Emit what arrived before the serving backend was known, labelled with it now."""
        held, self._held = self._held, []
        for ts_name, kind, value, unit, labels in held:
            self.emit(ts_name, kind, value, unit, {**labels, "backend": self._backend()})

    def emit(self, ts_name: str, kind: str, value: float, unit: str,
             labels: Mapping[str, str]) -> None:
        """Write one value through TorchServe's metrics API; never fail the caller."""
        ctx = self._get_context()
        cache = getattr(ctx, "metrics", None) if ctx is not None else None
        if cache is None:
            return
        try:
            from ts.metrics.dimension import Dimension
            from ts.metrics.metric_type_enum import MetricTypes

            dims = [Dimension(d, str(labels.get(d.lower(), "-")))
                    for d in DIMENSIONS.get(ts_name, ())]
            if kind == "counter":
                cache.add_counter(ts_name, value, None, dims)
            elif kind == "time":
                cache.add_time(ts_name, round(float(value), 4), None,
                               "s" if unit == "s" else "ms", dims)
            else:
                cache.add_metric(ts_name, value, "count", None, dims, MetricTypes.GAUGE)
        except Exception:  # noqa: BLE001 - metrics must never break serving
            logger.debug("could not emit TorchServe metric %s", ts_name, exc_info=True)
