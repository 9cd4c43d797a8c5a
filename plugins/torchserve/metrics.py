"""Forward yellowstone's metrics to TorchServe's per-worker metrics cache (``context.metrics``).

TorchServe writes what the cache receives to its model metrics log, or serves it on the metrics
API in Prometheus mode (with ``model_metrics_auto_detect=true``). Names are CamelCase, as
TorchServe's own (``HandlerTime``, ``PredictionTime``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

# core metric name -> (TorchServe metric name, kind)
NAMES = {
    "yellowstone_backend_in_use": ("YellowstoneBackendInUse", "gauge"),
    "yellowstone_compile_seconds": ("YellowstoneCompileTime", "time"),
    "yellowstone_load_seconds": ("YellowstoneLoadTime", "time"),
    "yellowstone_fallbacks_total": ("YellowstoneFallbacks", "counter"),
    "yellowstone_inference_ms": ("YellowstoneInferenceTime", "time"),
}
# TorchServe fixes a metric's dimension names the first time it is added; keep them fixed.
DIMENSIONS = {
    "YellowstoneBackendInUse": ("Backend",),
    "YellowstoneCompileTime": ("Backend",),
    "YellowstoneLoadTime": ("Backend",),
    "YellowstoneFallbacks": ("Backend", "Reason"),
    "YellowstoneInferenceTime": ("Backend",),
}


class MetricsBridge:
    """A ``yellowstone.metrics`` listener that writes into a TorchServe metrics cache.

    ``get_context`` returns the handler's current context (TorchServe hands a context to every
    request); a missing cache (offline precompile) makes the bridge a no-op.
    """

    def __init__(self, get_context: Callable[[], Any], backend: Callable[[], str]):
        self._get_context = get_context
        self._backend = backend
        self._held: list[tuple[str, str, float, str, dict[str, str]]] = []

    def __call__(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Receive one core metric and forward it."""
        if name not in NAMES:
            return
        ts_name, kind = NAMES[name]
        labels = dict(labels)
        if name == "yellowstone_backend_in_use" and not value:
            return  # TorchServe gauges are per dimension set: only report the backend serving
        if "backend" not in labels:
            backend = self._backend()
            if backend == "pending":  # compile/load time arrives before the boost returns
                self._held.append((ts_name, kind, value, unit, labels))
                return
            labels["backend"] = backend
        self.emit(ts_name, kind, value, unit, labels)

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
