"""How a candidate is judged: native reference sets, the check against them, timing, score.

Reduced precision (``bf16``, ``fp16``, ``int8``) is judged on more samples than fp32: besides
the rounds at each batch size, every candidate runs a batch of ``ACCURACY_SAMPLES`` fresh random
inputs, over which top-1 agreement is pooled. Named dynamic dims are judged over their ranges
(:func:`dim_points`).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .bench import measure
from .boosted import Buckets, run_buckets
from .config import BoostConfig
from .errors import ConfigError
from .model import ModelHandle
from .report import Candidate
from .validate import OutputError, compare, pooled_problems, raise_if_mismatched

ValidationSet = tuple[str, dict[str, np.ndarray], list[np.ndarray]]  # label, feeds, reference
ACCURACY_SAMPLES = 64  # extra random samples each reduced-precision candidate is judged on


def validation_sets(handle: ModelHandle, cfg: BoostConfig, sizes: Sequence[int | None],
                    samples: Sequence[Mapping[str, np.ndarray]]) -> list[ValidationSet]:
    """Fresh random inputs (per batch size, per round) plus user samples, with native outputs.

    A model with named dynamic dims (``seq``, ``h``) is also judged at the sizes of
    :func:`dim_points` (smallest and largest of each range, an odd size), at the first batch
    size: a candidate right only at the example's size is rejected.
    """
    sets = []
    seed = int(time.time_ns() % 2**31)  # fresh inputs every boost
    for b in sizes:
        for r in range(cfg.validation_rounds):
            feeds = handle.random_feeds(batch=b, seed=seed + 1000 * (b or 0) + r)
            sets.append((f"batch {b}, random round {r + 1}" if b else f"random round {r + 1}",
                         feeds, handle.run(feeds)))
    b = sizes[0] if sizes else None
    for k, dims in enumerate(dim_points(handle)):
        label = ", ".join(f"{n}={v}" for n, v in dims.items())
        label = f"batch {b}, {label}" if b else label
        feeds = handle.random_feeds(batch=b, seed=seed + 5000 + k, dims=dims)
        try:
            ref = handle.run(feeds)
        except Exception as exc:  # noqa: BLE001 - the model itself refuses a size in range
            raise ConfigError(f"{handle.name} does not run natively at {label} ({type(exc).__name__}: "
                              f"{exc}); the input specs make that size valid: give the dim a "
                              "range the model takes") from exc
        sets.append((label, feeds, ref))
    if cfg.precision != "fp32" and handle.batched:
        feeds = handle.random_feeds(batch=ACCURACY_SAMPLES, seed=seed + 999)
        sets.append((f"accuracy set of {ACCURACY_SAMPLES} samples", feeds, handle.run(feeds)))
    for i, sample in enumerate(samples):
        feeds = {k: np.asarray(v) for k, v in sample.items()}
        sets.append((f"sample {i + 1}", feeds, handle.run(feeds)))
    return sets


def dim_points(handle: ModelHandle) -> list[dict[str, int]]:
    """Sizes of the named dynamic dims to validate at, besides the example's.

    Every dim at the smallest of its range, every dim at the largest, every dim at an odd size
    (7 where the range holds it, else the odd size nearest its middle) and, with several dims,
    the smallest and largest alternating (``h`` small, ``w`` large). Tied dims share one size.
    """
    ranges = handle.dim_ranges
    if not ranges:
        return []
    points = [{n: lo for n, (lo, _) in ranges.items()},
              {n: hi for n, (_, hi) in ranges.items()},
              {n: _odd_size(lo, hi) for n, (lo, hi) in ranges.items()}]
    if len(ranges) > 1:
        points.append({n: r[i % 2] for i, (n, r) in enumerate(ranges.items())})
    example = handle.example_dims
    out: list[dict[str, int]] = []
    for p in points:
        if p != example and p not in out:
            out.append(p)
    return out


def _odd_size(lo: int, hi: int) -> int:
    if lo <= 7 <= hi:
        return 7
    mid = (lo + hi) // 2 | 1
    return mid if mid <= hi else hi


def validate(name: str, handle: ModelHandle, compiled: Buckets, cfg: BoostConfig,
             sets: Sequence[ValidationSet],
             errors: dict[str, OutputError] | None = None) -> dict[str, OutputError]:
    """Check ``compiled`` on every set; fill ``errors`` (also when it raises) and raise on mismatch.

    Beside buckets of fixed sizes, a dynamic-batch artifact is checked on every set as well.
    """
    errors = {} if errors is None else errors
    problems: list[str] = []
    views = {"": compiled}
    if None in compiled and len(compiled) > 1:  # it serves the sizes without a bucket: judged too
        views[" (dynamic-batch artifact)"] = {None: compiled[None]}
    for suffix, view in views.items():
        for label, feeds, ref in sets:
            got = run_buckets(view, feeds, handle.batched)
            problems += compare(handle.output_names, ref, got, cfg.precision, task=cfg.task,
                                errors=errors, context=label + suffix)
    problems += pooled_problems(errors, cfg.precision, cfg.task)
    raise_if_mismatched(name, problems)
    return errors


def record_errors(cand: Candidate, errors: Mapping[str, OutputError]) -> None:
    """Put the worst error of every output into the candidate's report entry."""
    if errors:
        cand.max_abs_err = max(e.max_abs_err for e in errors.values())
        cand.max_rel_err = max(e.max_rel_err for e in errors.values())
        tops = [e.top1_agreement for e in errors.values() if e.top1_agreement is not None]
        cand.top1_agreement = min(tops) if tops else None
        cosines = [e.mean_cosine for e in errors.values() if e.mean_cosine is not None]
        cand.mean_cosine = min(cosines) if cosines else None


def bench(cand: Candidate, run: Callable[[dict[str, np.ndarray]], object], handle: ModelHandle,
          sizes: Sequence[int | None], budget: float) -> None:
    """Measure ``run`` at every batch size; p50/p90 of the first go in the top-level fields."""
    for b in sizes:
        feeds = handle.random_feeds(batch=b, seed=7)
        t = measure(functools.partial(run, feeds), budget_s=budget)
        cand.latency_ms[b or example_batch(handle)] = {"p50_ms": round(t.p50_ms, 4),
                                                        "p90_ms": round(t.p90_ms, 4),
                                                        "iters": t.iters}
    first = cand.latency_ms[next(iter(cand.latency_ms))]
    cand.p50_ms, cand.p90_ms = first["p50_ms"], first["p90_ms"]


RUNOFF_MARGIN = 0.50  # candidates within this fraction of the fastest at a size are re-timed
RUNOFF_ROUNDS = 8  # at most; fewer where a round would not hold a few calls of each
RUNOFF_MIN_ROUNDS = 3
RUNOFF_CALLS = 4  # calls a candidate's slice of a round takes at the least (1 warm-up, 3 timed)


def runoff(cands: Sequence[Candidate], runners: Mapping[str, Callable[[dict[str, np.ndarray]], object]],
           handle: ModelHandle, sizes: Sequence[int | None], budget: float) -> None:
    """Time near-tied candidates again, taking turns, once every candidate is built.

    :func:`bench` times each candidate right after its own compile and check, one after the
    other, so a drift of the host can fall on one candidate and not on another. On the 2-core
    machines measured here a single timing was up to 50% off (MobileNetV3 on ONNX Runtime read
    5.7 ms in one search and 3.5 ms in the next; a Keras model's two backends both read 6.2 ms
    and then 3.8 against 4.5 ms). At each size where several valid candidates lie within
    ``RUNOFF_MARGIN`` of the fastest, they are timed again in rounds, each candidate a short
    slice per round, in ABBA order (A B, B A, A B, ...), ``budget`` each in all: up to
    ``RUNOFF_ROUNDS`` rounds, fewer for a slow model, so that a slice holds ``RUNOFF_CALLS``
    calls. Adjacent slices see the same host, so each round is judged on its own: that size's
    p50 becomes :func:`settle`'s reading of the rounds (``runoff`` in its entry says how many).
    A clear winner costs nothing more.
    """
    for b in sizes:
        key = b or example_batch(handle)
        timed = [c for c in cands if c.backend in runners and key in c.latency_ms]
        if len(timed) < 2:
            continue
        fastest = min(c.latency_ms[key]["p50_ms"] for c in timed)
        close = [c for c in timed if c.latency_ms[key]["p50_ms"] <= fastest * (1 + RUNOFF_MARGIN)]
        if len(close) < 2:
            continue
        slowest = max(c.latency_ms[key]["p50_ms"] for c in close)
        rounds = int(min(RUNOFF_ROUNDS, max(RUNOFF_MIN_ROUNDS,
                                             budget * 1e3 // (RUNOFF_CALLS * max(slowest, 1e-6)))))
        feeds = handle.random_feeds(batch=b, seed=7)
        fns = {c.backend: functools.partial(runners[c.backend], feeds) for c in close}
        names = list(fns)
        p50s: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                t = measure(fns[n], budget_s=budget / rounds, warmup=1, min_iters=RUNOFF_CALLS - 1)
                p50s[n].append(t.p50_ms)
        for c, p50 in zip(close, settle([p50s[n] for n in names])):
            entry = c.latency_ms[key]
            entry["p50_ms"] = round(p50, 4)
            entry["runoff"] = rounds
    for c in cands:
        if c.latency_ms:
            first = c.latency_ms[next(iter(c.latency_ms))]
            c.p50_ms, c.p90_ms = first["p50_ms"], first["p90_ms"]


def settle(rounds: Sequence[Sequence[float]]) -> list[float]:
    """One p50 per candidate from per-round p50s (``rounds[candidate][round]``).

    Within a round every candidate is read against the round's geometric mean, so a slow spell
    that covers a whole round scales all of them alike and cancels; the median of those relative
    readings over the rounds, times the median round level, is the candidate's p50. One round in
    which the host slowed during one candidate's slice only moves that candidate's median by a
    rank, where it would move a mean by the whole slowdown.
    """
    n_rounds = min(len(r) for r in rounds)
    levels = [math.exp(sum(math.log(max(r[i], 1e-9)) for r in rounds) / len(rounds))
              for i in range(n_rounds)]
    scale = statistics.median(levels)
    return [statistics.median(r[i] / levels[i] for i in range(n_rounds)) * scale for r in rounds]


def score(cand: Candidate) -> float:
    """Geometric mean of p50 over the served batch sizes (lower is better)."""
    vals = [v["p50_ms"] for v in cand.latency_ms.values()]
    return math.exp(sum(math.log(max(v, 1e-9)) for v in vals) / len(vals)) if vals else math.inf


def example_batch(handle: ModelHandle) -> int:
    """The batch size of the model's example inputs (1 when they have none)."""
    first = next(iter(handle.example_feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1
