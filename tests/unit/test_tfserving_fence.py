"""The shim's fence (``plugins/tfserving/fence.py``) over fake shim calls: what falls back, what fails."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from yellowstone import BoostConfig, metrics
from yellowstone.breaker import DeadlineRunner
from yellowstone.errors import BadRequestError
from yellowstone.plugins.tfserving.errors import ServingError
from yellowstone.plugins.tfserving.fence import Fallback, ShimFence

OUT = {"y": np.arange(3, dtype=np.float32)}


def _fence(model: str, timeout_s: float = 0.0, **options) -> ShimFence:
    cfg = BoostConfig(call_timeout_s=timeout_s, **options)
    runner = DeadlineRunner(model, timeout_s) if timeout_s else None
    labels = {"model": model, "version": "1", "signature": "k"}
    return ShimFence(f"{model} v1 [k]", labels, "fake", cfg, runner)


def _raise(exc):
    def call():
        raise exc

    return call


def test_a_bad_request_is_a_misfit_and_never_a_breaker_failure():
    fence = _fence("fence-bad", max_runtime_failures=1)
    for _ in range(3):
        got = fence.run(_raise(BadRequestError("inputs do not match")))
        assert got == Fallback("shape", "inputs do not match")
    assert fence.healthy and fence.breaker.failures == 0


def test_the_batch_queue_answer_reaches_the_client_and_a_trial_is_retried():
    fence = _fence("fence-queue", max_runtime_failures=1, breaker_backoff_s=1e-3, breaker_backoff_max_s=1e-3)
    assert fence.run(_raise(RuntimeError("boom"))).reason == "runtime"
    assert fence.breaker.state == "open"
    fence.breaker.retry_at = 0.0  # the back-off is over: the next call is the trial
    with pytest.raises(ServingError):
        fence.run(_raise(ServingError("UNAVAILABLE", "queue full")))
    assert fence.breaker.state == "open"  # the trial proved nothing: the next request retries
    fence.breaker.retry_at = 0.0
    assert fence.run(lambda: OUT) is OUT and fence.healthy
    assert metrics.get(metrics.RECOVERIES, model="fence-queue", backend="fake") == 1


def test_a_shim_with_a_slow_call_is_closed_once_it_returns_and_its_gauge_is_cleared():
    fence = _fence("fence-close", timeout_s=0.05)
    release, closed = threading.Event(), threading.Event()

    def slow():
        release.wait(60)
        return OUT

    assert fence.run(slow).reason == "deadline"
    assert fence.run(lambda: OUT).reason == "deadline"  # fenced off while the slow call runs
    assert metrics.get(metrics.BACKEND_IN_USE, model="fence-close", backend="tensorflow") == 1
    fence.close(closed.set)
    assert not closed.is_set()
    assert metrics.get(metrics.BACKEND_IN_USE, model="fence-close") == 0
    release.set()
    assert closed.wait(30)
    assert metrics.get(metrics.BACKEND_IN_USE, model="fence-close") == 0
