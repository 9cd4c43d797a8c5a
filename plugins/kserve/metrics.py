"""The ``yellowstone_*`` series on KServe's ``/metrics``: a prometheus_client collector.

KServe serves prometheus_client's default ``REGISTRY``; :func:`register` adds one collector to
it (once per process) that reads ``yellowstone.metrics.series()`` at each scrape: counters for
unit ``count``, gauges for ``gauge``, summaries (``_count``, ``_sum``) plus a ``<name>_last``
gauge for timings (``ms``, ``s``), as ``yellowstone.serving.prometheus_text`` writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from yellowstone import metrics

_lock = threading.Lock()
_registered: dict[int, YellowstoneCollector] = {}  # id(registry) -> its collector

class YellowstoneCollector:
    """A prometheus_client custom collector over ``yellowstone.metrics.series()``."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        families: dict[str, Metric] = {}

        def family(name: str, kind: str, doc: str) -> Metric:
            if name not in families:
                families[name] = Metric(name, doc, kind)
            return families[name]

        for name, unit, labels, value, timing in metrics.series():
            if timing is not None:
                summary = family(name, "summary", f"yellowstone timing in {unit}")
                summary.add_sample(f"{name}_count", labels, float(timing[0]))
                summary.add_sample(f"{name}_sum", labels, float(timing[1]))
                family(f"{name}_last", "gauge", f"yellowstone last timing in {unit}").add_sample(
                    f"{name}_last", labels, float(value))
            elif unit == "count":
                base = name[:-len("_total")] if name.endswith("_total") else name
                family(base, "counter", "yellowstone counter").add_sample(
                    f"{base}_total", labels, float(value))
            else:
                family(name, "gauge", "yellowstone gauge").add_sample(name, labels, float(value))
        yield from families.values()


def register(registry: Any = None) -> YellowstoneCollector:
    """Register the collector with ``registry`` (default: prometheus_client's REGISTRY), once."""
    if registry is None:
        import prometheus_client

        registry = prometheus_client.REGISTRY
    with _lock:
        if id(registry) not in _registered:
            collector = YellowstoneCollector()
            registry.register(collector)
            _registered[id(registry)] = collector
        return _registered[id(registry)]
