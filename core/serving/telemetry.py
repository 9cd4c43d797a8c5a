"""The ``yellowstone_*`` series out to a server: one description of them, and its two views.

:data:`SERIES` describes each core series once (its kind, help text and labels; a plugin's own
series is described from its unit by :func:`describe`). A server that is pushed values
(TorchServe's metrics cache) gets them through a :class:`MetricsBridge`, a listener told each
value with its description; a server that scrapes (KServe's ``/metrics``, TF Serving's
Prometheus page) reads :func:`families`, every series now as Prometheus families, through
prometheus_client (a custom collector) or as text (:func:`prometheus_text`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

from .. import metrics

TIMING_UNITS = ("ms", "s")


@dataclasses.dataclass(frozen=True)
class Series:
    """One ``yellowstone_*`` series: ``kind`` is counter, gauge or timing (unit ``ms``/``s``).

    ``labels`` are those the core gives it; a plugin may add its own (TF Serving adds
    ``version`` and ``signature``).
    """

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


SERIES: Mapping[str, Series] = {s.name: s for s in (
    Series(metrics.BACKEND_IN_USE, "gauge",
           "1 for the backend serving a model now, 0 for one that no longer serves it",
           ("model", "backend")),
    Series(metrics.COMPILE_SECONDS, "timing",
           "Seconds a boost took to search, compile and validate (a cache miss)", ("model", "backend")),
    Series(metrics.LOAD_SECONDS, "timing",
           "Seconds a warm start took, from the cache or a shipped artifact", ("model", "backend")),
    Series(metrics.FALLBACKS, "counter",
           "Boosts and calls the framework served instead of a compiled backend, by reason",
           ("model", "backend", "reason")),
    Series(metrics.RECOVERIES, "counter",
           "Circuit breakers that closed again: the compiled backend serves after a fallback",
           ("model", "backend")),
    Series(metrics.INFERENCE_MS, "timing",
           "Milliseconds one call took, labelled with the backend that served it", ("model", "backend")),
    Series(metrics.CACHE_DISCARDS, "counter",
           "Cache entries discarded (malformed, tampered with or untrusted) and rebuilt, by reason",
           ("reason",)),
)}


def describe(name: str, unit: str) -> Series:
    """The series ``name``: as :data:`SERIES` has it, else (a plugin's own) told by its unit."""
    known = SERIES.get(name)
    if known is not None:
        return known
    kind = "counter" if unit == "count" else "timing" if unit in TIMING_UNITS else "gauge"
    return Series(name, kind, f"yellowstone {kind}" + (f" in {unit}" if kind == "timing" else ""))


class MetricsBridge:
    """A ``yellowstone.metrics`` listener; ``attach()`` starts forwarding, ``detach()`` stops.

    A subclass implements :meth:`record`, which is told every value of every series; it never
    breaks the caller (an error is dropped).
    """

    def __call__(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        try:
            self.record(name, value, unit, labels)
        except Exception:  # noqa: BLE001 - metrics must never break serving
            pass

    def record(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Write one value (unit ``count``: a counter's increment; ``gauge``; ``ms``/``s``: a timing).

        :func:`describe` tells what ``name`` is.
        """
        raise NotImplementedError

    def attach(self) -> MetricsBridge:
        metrics.add_listener(self)
        return self

    def detach(self) -> None:
        metrics.remove_listener(self)


class Sample(NamedTuple):
    """One line of a family: its full name (``..._total``, ``..._count``), labels and value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclasses.dataclass(frozen=True)
class Family:
    """A Prometheus metric family, named as prometheus_client names it.

    A counter's name is without ``_total``; its samples carry the suffix.
    """

    name: str
    type: str  # counter | gauge | summary
    help: str
    samples: tuple[Sample, ...]


def families() -> list[Family]:
    """Every ``yellowstone_*`` series now, as Prometheus families.

    Counters are counters (samples ``<name>_total``), gauges gauges; a timing is a summary
    (``_count`` and ``_sum`` since the start) plus its last value as the gauge ``<name>_last``.
    """
    grouped: dict[str, tuple[str, str, list[Sample]]] = {}

    def add(family: str, kind: str, text: str, sample: Sample) -> None:
        grouped.setdefault(family, (kind, text, []))[2].append(sample)

    for name, unit, labels, value, timing in metrics.series():
        text = describe(name, unit).help
        if timing is not None:
            add(name, "summary", text, Sample(f"{name}_count", labels, float(timing[0])))
            add(name, "summary", text, Sample(f"{name}_sum", labels, float(timing[1])))
            add(f"{name}_last", "gauge", f"The last value of {name}",
                Sample(f"{name}_last", labels, float(value)))
        elif unit == "count":
            base = name.removesuffix("_total")
            add(base, "counter", text, Sample(f"{base}_total", labels, float(value)))
        else:
            add(name, "gauge", text, Sample(name, labels, float(value)))
    return [Family(name, kind, text, tuple(samples)) for name, (kind, text, samples) in grouped.items()]


def _escape(value: str, quote: bool = True) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quote else value


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _number(value: float) -> str:
    """A value exactly: integers without a fraction, others as Python's shortest repr."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def prometheus_text() -> str:
    """:func:`families` in Prometheus' text exposition format (version 0.0.4).

    Written as prometheus_client writes it: a counter's HELP and TYPE name it with ``_total``.
    """
    lines: list[str] = []
    for family in families():
        shown = f"{family.name}_total" if family.type == "counter" else family.name
        lines += [f"# HELP {shown} {_escape(family.help, quote=False)}", f"# TYPE {shown} {family.type}"]
        lines += [f"{s.name}{_labels(s.labels)} {_number(s.value)}" for s in family.samples]
    return "\n".join(lines) + ("\n" if lines else "")
