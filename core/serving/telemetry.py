"""Core metrics out to a server: a listener base class for bridges, and Prometheus text.

A plugin's bridge subclasses :class:`MetricsBridge` and implements ``record``; the core emits
``yellowstone_*`` series (``yellowstone.metrics``) and the bridge writes them into the server's
own metrics system. Servers that expose Prometheus text (KServe's ``/metrics``, TF Serving's
monitoring endpoint) append :func:`prometheus_text`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import metrics


class MetricsBridge:
    """A ``yellowstone.metrics`` listener; ``attach()`` starts forwarding, ``detach()`` stops."""

    def __call__(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        try:
            self.record(name, value, unit, labels)
        except Exception:  # noqa: BLE001 - metrics must never break serving
            pass

    def record(self, name: str, value: float, unit: str, labels: Mapping[str, str]) -> None:
        """Write one value (unit ``count`` = counter increment, ``gauge``, ``ms``/``s`` = timing)."""
        raise NotImplementedError

    def attach(self) -> MetricsBridge:
        metrics.add_listener(self)
        return self

    def detach(self) -> None:
        metrics.remove_listener(self)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def prometheus_text() -> str:
    """Every ``yellowstone_*`` series in Prometheus' text exposition format (version 0.0.4).

    Counters keep their ``_total`` name; gauges are gauges; timings (``ms``/``s``) are summaries
    with ``_count`` and ``_sum``, plus the last value as a gauge ``<name>_last``.
    """
    lines: list[str] = []
    typed: set[str] = set()
    for name, unit, labels, value, timing in metrics.series():
        lab = _labels(labels)
        if timing is not None:
            if name not in typed:
                lines += [f"# HELP {name} yellowstone timing in {unit}", f"# TYPE {name} summary",
                          f"# TYPE {name}_last gauge"]
                typed.add(name)
            lines += [f"{name}_count{lab} {timing[0]}", f"{name}_sum{lab} {timing[1]:.6g}",
                      f"{name}_last{lab} {value:.6g}"]
            continue
        kind = "counter" if unit == "count" else "gauge"
        if name not in typed:
            lines += [f"# HELP {name} yellowstone {kind}", f"# TYPE {name} {kind}"]
            typed.add(name)
        lines.append(f"{name}{lab} {value:.6g}")
    return "\n".join(lines) + ("\n" if lines else "")
