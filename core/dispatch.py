"""Per-batch dispatch: each size's backend chosen within the memory budget, routed, and run."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import CompiledModel
from .breaker import Guard
from .config import BoostConfig
from .report import Candidate, Report

logger = logging.getLogger(__name__)

NATIVE = "native"

Buckets = dict[int | None, CompiledModel]  # batch size (None = dynamic) -> compiled model
Built = tuple[Buckets, Mapping[int | None, Path]]  # a backend's compiled buckets and their dirs


def is_batch_size(value: Any) -> bool:
    """True for a positive int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    """The batch size of checked, batched feeds (dimension 0 of any input)."""
    return int(next(iter(feeds.values())).shape[0])


def run_buckets(compiled: Buckets, feeds: Mapping[str, np.ndarray],
                batched: bool) -> list[np.ndarray]:
    """Run ``feeds`` on the artifact for their batch size.

    That size's own bucket, else the dynamic artifact, else the nearest larger bucket with the
    batch padded up (in chunks of the largest past it).
    """
    if not batched or len(compiled) == 1 and None in compiled:
        return next(iter(compiled.values())).run(feeds)
    n = batch_of(feeds)
    if n in compiled:
        return compiled[n].run(feeds)
    if None in compiled:
        return compiled[None].run(feeds)
    sizes = sorted(b for b in compiled if b is not None)
    bucket = next((b for b in sizes if b >= n), sizes[-1])
    if n > bucket:  # larger than every bucket: run in chunks of the largest
        parts = [run_buckets(compiled, {k: v[i:i + bucket] for k, v in feeds.items()}, batched)
                 for i in range(0, n, bucket)]
        return [np.concatenate(outs) for outs in zip(*parts)]
    padded = {k: np.concatenate([v, np.repeat(v[-1:], bucket - n, axis=0)]) for k, v in feeds.items()}
    return [o[:n] for o in compiled[bucket].run(padded)]


def disk_bytes(dirs: Mapping[int | None, Path]) -> int:
    """The on-disk size of a backend's artifacts (the proxy ``dispatch_memory_mb`` budgets)."""
    return sum(f.stat().st_size for d in dirs.values() for f in Path(d).rglob("*") if f.is_file())


def p50_at(cand: Candidate, batch: int) -> float:
    """``cand``'s p50 at ``batch`` (infinite when it was not measured there)."""
    return float(cand.latency_ms.get(batch, {}).get("p50_ms", math.inf))


# -- choosing ---------------------------------------------------------------------------------
def plan_dispatch(report: Report, cfg: BoostConfig, best: Candidate,
                  built: Mapping[str, Built]) -> list[str]:
    """Fill ``report.dispatch`` of a batched model: each served size's fastest valid backend.

    ``best`` serves the first size; with ``single`` dispatch it serves every size. The others
    are kept within ``dispatch_memory_mb``. Return the backends besides ``best`` whose artifacts
    serve (native needs none).
    """
    sizes = report.batch_sizes
    if cfg.dispatch == "single":
        report.dispatch = {b: best.backend for b in sizes}
        return []
    valid = [c for c in report.candidates if c.status in ("ok", "chosen")]
    winners = {b: min(valid, key=functools.partial(p50_at, batch=b)) for b in sizes}
    winners[sizes[0]] = best
    kept = _within_budget(report, cfg.dispatch_memory_mb, best.backend,
                          {b: c.backend for b, c in winners.items()}, built)
    dispatch = {}
    for b, cand in winners.items():
        if cand.backend not in kept:
            cand = min((c for c in valid if c.backend in kept),
                       key=functools.partial(p50_at, batch=b))
        dispatch[b] = cand.backend
    report.dispatch = dispatch
    _explain_winners(valid, best, dispatch)
    return [n for n in dict.fromkeys(dispatch.values()) if n not in (best.backend, NATIVE)]


def _explain_winners(valid: Sequence[Candidate], best: Candidate,
                     dispatch: Mapping[int, str]) -> None:
    """Say in each serving candidate's reason which sizes it serves instead of ``best``."""
    for cand in valid:
        served = [b for b, n in dispatch.items() if n == cand.backend]
        if cand is not best and served:
            cand.reason = "serves batch " + ", ".join(
                f"{b} (p50 {p50_at(cand, b):.3f} ms vs {p50_at(best, b):.3f} ms on "
                f"{best.backend})" for b in served)


def _within_budget(report: Report, budget_mb: int | float, first: str,
                   winners: Mapping[int, str], built: Mapping[str, Built]) -> set[str]:
    """The backends kept: ``first``, native, and the other winners whose artifacts fit.

    ``budget_mb`` (``dispatch_memory_mb``, 0: no bound) bounds the on-disk size of every kept
    backend's artifacts, ``first``'s included; winners of more sizes are kept first.
    """
    others = [n for n in dict.fromkeys(winners.values()) if n not in (first, NATIVE)]
    kept = {first, NATIVE}
    budget = budget_mb * 2**20
    if not budget:
        return kept | set(others)
    used = disk_bytes(built[first][1]) if first in built else 0
    others.sort(key=lambda n: -sum(w == n for w in winners.values()))
    for name in others:
        need = disk_bytes(built[name][1])
        if used + need <= budget:
            kept.add(name)
            used += need
            continue
        won = ", ".join(str(b) for b, w in winners.items() if w == name)
        note = (f"fastest at batch {won} but left out: its artifacts "
                f"({need / 2**20:.1f} MB) do not fit dispatch_memory_mb="
                f"{budget_mb} ({used / 2**20:.1f} MB kept)")
        cand = report.candidate(name)
        if cand is not None:
            cand.reason = note
        logger.info("%s: %s %s", report.model, name, note)
    return kept


# -- routing ----------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class Route:
    """One backend serving some batch sizes: its buckets, artifact dirs and health (its guard)."""

    backend: str
    compiled: Buckets | None  # None: the framework
    dirs: dict[int | None, Path]
    guard: Guard  # its fallback is native

    @property
    def healthy(self) -> bool:
        """True when requests go to this backend now."""
        return self.guard.healthy

    @property
    def serving(self) -> str:
        """The backend that answers this route's requests now."""
        return self.guard.serving


class DispatchTable:
    """Batch size -> route: a batch goes to the route of the nearest served size at or above it.

    ``first`` serves the first size, and every size whose backend has no route; a batch past
    the largest served size goes to the largest's route.
    """

    def __init__(self, routes: Mapping[str, Route], first: str, dispatch: Mapping[int, str]):
        self.first = routes[first]
        self._table = [(b, routes.get(name, self.first)) for b, name in sorted(dispatch.items())]
        self._one_route = len({id(r) for _, r in self._table} | {id(self.first)}) == 1

    def pick(self, batch: int) -> Route:
        """The route a request of ``batch`` rows goes to."""
        if self._one_route:
            return self.first
        return next((r for b, r in self._table if b >= batch), self._table[-1][1])

    def serving(self) -> dict[int, str]:
        """Each served size's backend now (native where its route is fenced off)."""
        return {b: r.serving for b, r in self._table}
