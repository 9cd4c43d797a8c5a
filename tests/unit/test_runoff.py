"""The runoff: near-tied candidates are timed again in turns before the choice; the check of
every artifact a candidate serves with."""

from __future__ import annotations

import time

import numpy as np
import pytest

import yellowstone
from yellowstone import judge
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.config import BoostConfig
from yellowstone.errors import ValidationError
from yellowstone.report import Candidate

from .fakes import FakeBackend, NumpyModel


def _cand(name: str, p50: float) -> Candidate:
    c = Candidate(backend=name, status="ok")
    c.latency_ms = {1: {"p50_ms": p50, "p90_ms": p50, "iters": 10}}
    c.p50_ms = c.p90_ms = p50
    return c


def _sleeper(ms: float, calls: list):
    def run(feeds):
        calls.append(feeds["x"].shape[0])
        time.sleep(ms / 1e3)
    return run


def test_near_ties_are_timed_again_in_turns_and_far_ones_are_not():
    # As first timed, "a" looked fastest and "b" 5% behind; "c" is far behind.
    a, b, c = _cand("a", 1.00), _cand("b", 1.05), _cand("c", 5.0)
    calls = {n: [] for n in "abc"}
    runners = {"a": _sleeper(2.0, calls["a"]), "b": _sleeper(0.2, calls["b"]),
               "c": _sleeper(0.1, calls["c"])}
    judge.runoff([a, b, c], runners, NumpyModel(), [1], budget=0.06)
    assert calls["c"] == []  # not close: its first timing stands
    assert c.latency_ms[1] == {"p50_ms": 5.0, "p90_ms": 5.0, "iters": 10}
    assert a.latency_ms[1]["runoff"] == b.latency_ms[1]["runoff"] == judge.RUNOFF_ROUNDS
    assert b.p50_ms < 1.0 < a.p50_ms  # the rounds' medians now rank them as they run
    assert set(calls["a"]) == set(calls["b"]) == {1}


def test_settle_reads_each_round_on_its_own():
    # "b" runs at 0.9 of "a"; rounds 2 and 3 ran on a host three times slower, and in round 5
    # the host stalled during b's slice only.
    levels = [1, 1, 3, 3, 1, 1, 1, 1]
    a = [1.0 * v for v in levels]
    b = [0.9 * v for v in levels]
    b[5] = 4.0
    sa, sb = judge.settle([a, b])
    assert 0.89 < sb / sa < 0.91
    assert 0.9 < sa < 1.2  # still in ms: the median round's level


def test_a_slow_model_gets_fewer_longer_rounds():
    # 20 ms a call against a 0.1 s budget: a slice of 8 rounds could not hold 4 calls
    a, b = _cand("a", 20.0), _cand("b", 21.0)
    calls = {n: [] for n in "ab"}
    judge.runoff([a, b], {"a": _sleeper(20.0, calls["a"]), "b": _sleeper(20.0, calls["b"])},
                 NumpyModel(), [1], budget=0.1)
    assert a.latency_ms[1]["runoff"] == b.latency_ms[1]["runoff"] == judge.RUNOFF_MIN_ROUNDS
    assert len(calls["a"]) >= judge.RUNOFF_MIN_ROUNDS * judge.RUNOFF_CALLS
    assert 19.0 < a.p50_ms < 30.0


def test_a_lone_candidate_or_a_clear_winner_costs_nothing():
    a, b = _cand("a", 1.0), _cand("b", 2.0)
    calls: list = []
    judge.runoff([a, b], {"a": _sleeper(0.1, calls), "b": _sleeper(0.1, calls)}, NumpyModel(),
                 [1], budget=0.05)
    judge.runoff([a], {"a": _sleeper(0.1, calls)}, NumpyModel(), [1], budget=0.05)
    assert calls == [] and "runoff" not in a.latency_ms[1]


def test_boost_holds_a_runoff_between_tied_candidates(cache_dir):
    # 0.3 ms a call each (sleep-bound, so equal within the margin); native sleeps 1 ms
    made = {"tie1": FakeBackend("tie1", delay=3e-4), "tie2": FakeBackend("tie2", delay=3e-4)}
    for name, backend in made.items():
        register_backend(name, backend)
    try:
        boosted = yellowstone.boost(NumpyModel(), backends="tie1,tie2", time_budget_s=0.03,
                                    validation_rounds=1)
    finally:
        for name in made:
            unregister_backend(name)
    tied = {c.backend: c for c in boosted.report.candidates}
    assert tied["tie1"].latency_ms[1].get("runoff") == judge.RUNOFF_ROUNDS
    assert tied["tie2"].latency_ms[1].get("runoff") == judge.RUNOFF_ROUNDS
    assert "runoff" not in tied["native"].latency_ms[1]  # 1 ms a call: far behind both
    assert boosted.backend in ("tie1", "tie2")
    x = np.ones((2, 6), np.float32)
    assert boosted.run({"x": x})[0].shape == (2, 3)


def test_a_wrong_dynamic_artifact_beside_right_buckets_is_rejected():
    # Every validation set has a bucket of its size; the dynamic artifact, which would serve
    # the other sizes, is still judged on its own.
    handle = NumpyModel()

    class Exact:
        def run(self, feeds):
            return handle.run(feeds)

    class Off(Exact):
        def run(self, feeds):
            return [o + 1.0 for o in handle.run(feeds)]

    cfg = BoostConfig(batch_sizes=(1, 4), validation_rounds=1)
    sets = judge.validation_sets(handle, cfg, [1, 4], ())
    judge.validate("good", handle, {1: Exact(), 4: Exact(), None: Exact()}, cfg, sets)
    with pytest.raises(ValidationError, match="dynamic-batch artifact"):
        judge.validate("bad", handle, {1: Exact(), 4: Exact(), None: Off()}, cfg, sets)


def test_a_fixed_shape_bucket_that_fails_leaves_the_dynamic_candidate(cache_dir):
    class StaticFails(FakeBackend):
        static_buckets = True

        def compile(self, model, request, workdir):
            if request.batch is not None:
                raise RuntimeError("fixed shape refused")
            return super().compile(model, request, workdir)

    register_backend("fixed", StaticFails("fixed", delay=1e-4))
    try:
        boosted = yellowstone.boost(NumpyModel(), backends="fixed", batch_sizes="1,4",
                                    time_budget_s=0.02, validation_rounds=1)
    finally:
        unregister_backend("fixed")
    cand = boosted.report.candidate("fixed")
    assert cand.status in ("ok", "chosen") and cand.buckets is None


def test_fixed_shape_buckets_sit_beside_the_dynamic_artifact(cache_dir):
    class Static(FakeBackend):
        static_buckets = True

    made = Static("fixed", delay=1e-4)
    register_backend("fixed", made)
    try:
        boosted = yellowstone.boost(NumpyModel(), backends="fixed", batch_sizes="1,4",
                                    time_budget_s=0.02, validation_rounds=1)
        again = yellowstone.boost(NumpyModel(), backends="fixed", batch_sizes="1,4",
                                  time_budget_s=0.02, validation_rounds=1)
    finally:
        unregister_backend("fixed")
    assert boosted.report.candidate("fixed").buckets == [1, 4, None]
    assert made.compiles == 3  # the dynamic artifact and one per size; the second boost hits
    assert again.report.cache == "hit"
