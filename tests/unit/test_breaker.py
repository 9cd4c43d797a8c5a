"""Runtime fallback: the circuit breaker (open, half-open trial, recovery) and the call deadline."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

import yellowstone
from yellowstone import metrics
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.breaker import Breaker
from yellowstone.config import BoostConfig
from yellowstone.errors import ConfigError

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1)


class Gated(FakeBackend):
    """A fake whose compiled run blocks on ``release`` while ``hang`` is set (a hung device)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.hang = False
        self.release = threading.Event()
        self.entered = 0  # compiled calls started
        self.finished = 0  # compiled calls returned

    def _load(self, model, request, workdir):
        compiled = super()._load(model, request, workdir)
        run = compiled.run

        def gated(feeds):
            self.entered += 1
            if self.hang:
                self.release.wait(30)
            try:
                return run(feeds)
            finally:
                self.finished += 1

        compiled.run = gated
        return compiled


@pytest.fixture
def flaky(cache_dir):
    backend = FakeBackend("flaky")
    backend.fail_at_run = [0]  # shared with every compiled model it loads
    register_backend("flaky", backend)
    yield backend
    unregister_backend("flaky")


@pytest.fixture
def gated(cache_dir):
    backend = Gated("gated")
    register_backend("gated", backend)
    yield backend
    backend.release.set()
    unregister_backend("gated")


def _x(seed: int, n: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 6)).astype(np.float32)}


def _fallbacks(reason: str, backend: str) -> float:
    return metrics.get(metrics.FALLBACKS, backend=backend, reason=reason)


def _in_use(model: str, backend: str) -> float:
    return metrics.get(metrics.BACKEND_IN_USE, model=model, backend=backend)


def test_breaker_opens_tries_again_after_the_backoff_and_recovers(flaky, caplog):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="flaky", max_runtime_failures=2,
                                breaker_backoff_s=0.2, breaker_backoff_max_s=0.8, **FAST)
    assert boosted.backend == "flaky" and _in_use(boosted.name, "flaky") == 1
    runtime, opened = _fallbacks("runtime", "flaky"), _fallbacks("breaker-open", "flaky")
    recovered = metrics.get(metrics.RECOVERIES, backend="flaky")
    flaky.fail_at_run[0] = 3  # two failures open the breaker; the first trial fails too

    def check(seed: int) -> None:
        x = _x(seed)
        np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)

    with caplog.at_level(logging.INFO, logger="yellowstone.boosted"):
        check(1)
        assert boosted.backend == "flaky"  # one failure: only that call went native
        check(2)  # the second in a row opens the breaker
        assert boosted.backend == "native" and boosted.report.chosen == "native"
        assert "failed 2 times in a row" in boosted.report.fallback_reason
        assert _in_use(boosted.name, "flaky") == 0 and _in_use(boosted.name, "native") == 1
        native_calls = model.native_calls
        check(3)  # open: straight to the framework, the backend is not called
        assert flaky.fail_at_run[0] == 1 and model.native_calls == native_calls + 2  # +1: check()
        time.sleep(0.25)
        check(4)  # the half-open trial fails: open again, for twice as long
        assert flaky.fail_at_run[0] == 0 and boosted.backend == "native"
        check(5)
        time.sleep(0.45)
        check(6)  # this trial works: closed
        assert boosted.backend == "flaky" and boosted.report.fallback_reason == ""
        assert _in_use(boosted.name, "flaky") == 1 and _in_use(boosted.name, "native") == 0
        native_calls = model.native_calls
        check(7)
        assert model.native_calls == native_calls + 1  # only check()'s reference run
    assert _fallbacks("runtime", "flaky") == runtime + 3  # calls 1, 2 and the failed trial
    assert _fallbacks("breaker-open", "flaky") == opened + 2  # calls 3 and 5
    assert metrics.get(metrics.RECOVERIES, backend="flaky") == recovered + 1
    records = [r for r in caplog.records if r.name == "yellowstone.boosted"]
    opens = [r for r in records if "circuit breaker" in r.getMessage()]
    assert len(opens) == 1 and opens[0].levelno == logging.WARNING
    assert any(r.levelno == logging.INFO and "recovered" in r.getMessage() for r in records)


def test_breaker_state_machine_doubles_the_backoff_up_to_the_cap():
    now = [0.0]
    breaker = Breaker(2, 1.0, 3.0, clock=lambda: now[0])
    assert breaker.admit() == "call" and breaker.failure(False) is None
    assert breaker.success(False) is False and breaker.failures == 0  # consecutive only
    breaker.failure(False)
    assert breaker.failure(False) == "opened" and breaker.admit() is None
    now[0] = 1.0
    assert breaker.admit() == "trial" and breaker.admit() is None  # one trial at a time
    assert breaker.failure(True) == "reopened" and breaker.backoff == 2.0
    now[0] = 3.0
    assert breaker.admit() == "trial"
    breaker.abandon(True)  # a bad request proves nothing: the next request is the trial
    assert breaker.admit() == "trial" and breaker.failure(True) == "reopened"
    assert breaker.backoff == 3.0  # capped
    assert breaker.failure(False) is None  # a late failure of an older call changes nothing
    now[0] = 6.0
    assert breaker.admit() == "trial" and breaker.success(True) is True
    assert breaker.state == "closed" and breaker.backoff == 1.0


def test_a_hung_call_does_not_hold_later_requests(gated, caplog):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="gated", call_timeout_s=0.2, **FAST)
    assert boosted.backend == "gated"
    deadline = _fallbacks("deadline", "gated")
    gated.hang = True
    entered = gated.entered
    with caplog.at_level(logging.INFO, logger="yellowstone.boosted"):
        t0 = time.perf_counter()
        x1 = _x(1)
        got = boosted.run(x1)  # the compiled call hangs; the framework answers at the deadline
        assert time.perf_counter() - t0 < 10  # generous: the hung call would hold it 30 s
        np.testing.assert_allclose(got[0], model.run(x1)[0], rtol=1e-5, atol=1e-6)
        assert gated.entered == entered + 1 and gated.finished < gated.entered  # still hung
        assert boosted.backend == "native" and "deadline" in boosted.report.fallback_reason
        assert _in_use(boosted.name, "gated") == 0
        for seed in (2, 3):  # later requests go straight to the framework
            x = _x(seed, n=5)
            np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
        assert gated.entered == entered + 1 and not gated.release.is_set()
        assert _fallbacks("deadline", "gated") == deadline + 3
        gated.hang = False
        gated.release.set()  # the slow call returns: the compiled path serves again
        for _ in range(500):
            if boosted.backend == "gated":
                break
            time.sleep(0.01)
        assert boosted.backend == "gated" and boosted.report.fallback_reason == ""
        x = _x(4)
        np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
        assert gated.entered == entered + 2
    warned = [r for r in caplog.records if r.levelno == logging.WARNING
              and r.name == "yellowstone.boosted"]  # not the boost's (a weak-reference note)
    assert len(warned) == 1 and "deadline" in warned[0].getMessage()  # once per episode
    assert any("returned" in r.getMessage() for r in caplog.records)


def test_a_deadline_miss_counts_for_the_breaker(gated):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="gated", call_timeout_s=0.1,
                                max_runtime_failures=1, breaker_backoff_s=60, **FAST)
    gated.hang = True
    boosted.run(_x(1))
    gated.release.set()
    for _ in range(500):
        if gated.finished == gated.entered:
            break
        time.sleep(0.01)
    time.sleep(0.05)  # the done-callback runs right after the call returns
    assert boosted.backend == "native"  # returned, but the breaker is open for 60 s
    assert "missed its 0.1 s deadline" in boosted.report.fallback_reason


def test_no_deadline_no_worker_threads(flaky):
    before = set(threading.enumerate())
    boosted = yellowstone.boost(NumpyModel(), backends="flaky", **FAST)
    boosted.run(_x(1))
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("yellowstone-")]


def test_fallback_options_are_validated():
    cfg = BoostConfig.from_dict({"breaker_backoff_s": "0.5", "breaker_backoff_max_s": "4",
                                 "call_timeout_s": "1.5"})
    assert (cfg.breaker_backoff_s, cfg.breaker_backoff_max_s, cfg.call_timeout_s) == (0.5, 4.0, 1.5)
    for bad in ({"breaker_backoff_s": 0}, {"breaker_backoff_s": "nan"},
                {"breaker_backoff_s": 10, "breaker_backoff_max_s": 5},
                {"call_timeout_s": -1}, {"call_timeout_s": "soon"},
                {"max_runtime_failures": 0}):
        with pytest.raises(ConfigError):
            BoostConfig.from_dict(bad)
