"""A tiny metrics hook: the core emits counters and timings; plugins forward them to servers.

``add_listener(fn)`` registers ``fn(name, value, unit, labels)``; every emission also updates an
in-process snapshot (``snapshot()``) that tests and ``BoostedModel.metrics`` read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

Listener = Callable[[str, float, str, Mapping[str, str]], None]

# Names every plugin may rely on.
BACKEND_IN_USE = "yellowstone_backend_in_use"  # gauge: 1 with labels {model, backend}
COMPILE_SECONDS = "yellowstone_compile_seconds"  # timing of the whole boost (search or load)
LOAD_SECONDS = "yellowstone_load_seconds"  # timing of a warm start from the cache/artifact
FALLBACKS = "yellowstone_fallbacks_total"  # counter: labels {model, backend, reason}
# reasons: compile, artifact, cache (at boost); runtime (a failed call), breaker-open (a request
# served natively while the breaker is open), deadline (past call_timeout_s, or while such a
# slow call is still running)
RECOVERIES = "yellowstone_recoveries_total"  # counter {model, backend}: a breaker closed again
INFERENCE_MS = "yellowstone_inference_ms"  # timing of one call, labelled with the backend serving it
CACHE_DISCARDS = "yellowstone_cache_discards_total"  # counter: labels {reason}

_lock = threading.Lock()
_listeners: list[Listener] = []
_Key = tuple[str, tuple[tuple[str, str], ...]]
_counters: dict[_Key, float] = {}
_units: dict[str, str] = {}  # metric name -> unit of its first emission
_timings: dict[_Key, tuple[int, float]] = {}  # timings: (count, sum) since start


def add_listener(fn: Listener) -> None:
    """Register ``fn`` to receive every metric."""
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    """Unregister a listener added with :func:`add_listener`."""
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


def emit(name: str, value: float, unit: str = "count", **labels: Any) -> None:
    """Record one metric value; counters (unit ``count``) accumulate in the snapshot."""
    str_labels = {k: str(v) for k, v in labels.items()}
    _record((name, tuple(sorted(str_labels.items()))), value, unit, str_labels)


class Series:
    """One metric with fixed labels, its key worked out once: for what is emitted on every call.

    ``Series(INFERENCE_MS, "ms", model="m", backend="b").emit(3.2)`` records exactly what
    ``emit(INFERENCE_MS, 3.2, "ms", model="m", backend="b")`` records; listeners see the same
    (read-only) labels mapping each time.
    """

    __slots__ = ("name", "unit", "labels", "_key")

    def __init__(self, name: str, unit: str = "count", **labels: Any):
        self.name, self.unit = name, unit
        str_labels = {k: str(v) for k, v in labels.items()}
        self._key: _Key = (name, tuple(sorted(str_labels.items())))
        self.labels: Mapping[str, str] = MappingProxyType(str_labels)

    def emit(self, value: float) -> None:
        """Record one value of this series."""
        _record(self._key, value, self.unit, self.labels)


def _record(key: _Key, value: float, unit: str, str_labels: Mapping[str, str]) -> None:
    name = key[0]
    with _lock:
        _units.setdefault(name, unit)
        if unit == "count":
            _counters[key] = _counters.get(key, 0.0) + value
        else:
            _counters[key] = value
        if unit in ("ms", "s"):
            count, total = _timings.get(key, (0, 0.0))
            _timings[key] = (count + 1, total + float(value))
        listeners = list(_listeners)
    for fn in listeners:
        fn(name, value, unit, str_labels)


def snapshot() -> dict[str, float]:
    """Current values as ``{"name{k=v,...}": value}``."""
    with _lock:
        return {name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}": value
                for (name, labels), value in _counters.items()}


def series() -> list[tuple[str, str, dict[str, str], float, tuple[int, float] | None]]:
    """Every series as ``(name, unit, labels, last or total value, (count, sum) for timings)``."""
    with _lock:
        return [(name, _units.get(name, "count"), dict(labels), value, _timings.get((name, labels)))
                for (name, labels), value in sorted(_counters.items())]


def get(name: str, **labels: Any) -> float:
    """Sum of a metric over every label set that includes ``labels``."""
    want = {k: str(v) for k, v in labels.items()}
    with _lock:
        return sum(v for (n, lab), v in _counters.items()
                   if n == name and want.items() <= dict(lab).items())
