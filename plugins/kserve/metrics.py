"""The ``yellowstone_*`` series on KServe's ``/metrics``: a prometheus_client collector.

KServe serves prometheus_client's default ``REGISTRY``; :func:`register` adds one collector to
it (once per process) that turns ``yellowstone.serving.telemetry.families()`` into
prometheus_client families at each scrape: the same families, names, types and labels as
``yellowstone.serving.prometheus_text`` writes for TF Serving's page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from yellowstone.serving import telemetry

_lock = threading.Lock()
_registered: dict[int, YellowstoneCollector] = {}  # id(registry) -> its collector


class YellowstoneCollector:
    """A prometheus_client custom collector over ``telemetry.families()``."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for family in telemetry.families():
            metric = Metric(family.name, family.help, family.type)
            for sample in family.samples:
                metric.add_sample(sample.name, dict(sample.labels), sample.value)
            yield metric


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
