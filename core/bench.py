"""Latency measurement: warm-up, then repeated runs within a time budget; median and p90."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
    """Latency statistics of one function at one batch size."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    iters: int

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly form."""
        return dataclasses.asdict(self)


def measure(fn: Callable[[], object], *, budget_s: float, warmup: int = 5,
            min_iters: int = 5, max_iters: int = 10_000) -> Timing:
    """Time ``fn`` after ``warmup`` calls, for ``budget_s`` seconds (at least ``min_iters`` runs).

    Five warm-up calls: TorchScript's profiling executor optimises a graph only after its first
    profiled runs, and timing those would flatter every compiled candidate against ``native``.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_iters and (len(samples) < min_iters or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(round(q * (len(samples) - 1))))]

    return Timing(p50_ms=pct(0.5), p90_ms=pct(0.9), mean_ms=sum(samples) / len(samples),
                  iters=len(samples))
