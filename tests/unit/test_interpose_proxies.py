"""Interposer proxies on a fake backend: the one fallback path, errors, release, the kill switch.

``NumpyProxy`` is the smallest proxy: the fake numpy model of ``fakes.py`` called as its own
framework would call it, boosted through the same base class every framework proxy uses.
"""

from __future__ import annotations

import gc
import logging
import weakref

import numpy as np
import pytest

import yellowstone
from yellowstone import metrics
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.errors import BadRequestError
from yellowstone.interpose import REGISTRY, Proxy

from .fakes import FakeBackend, NumpyModel


class NumpyProxy(Proxy):
    def __call__(self, *args, **kwargs):
        model = self._ys_original
        boosted = self._ys.get(lambda: yellowstone.boost(model, config=self._ys_config(None)))
        if boosted is None:
            return self._ys_original_call(model.call_native, *args, **kwargs)
        return self._ys_call_boosted(boosted, model.call_native, args, kwargs)


@pytest.fixture
def fakes(cache_dir, monkeypatch):
    made = {"fast": FakeBackend("fast"), "slow": FakeBackend("slow", delay=0.002)}
    for name, backend in made.items():
        register_backend(name, backend)
    monkeypatch.setenv("YELLOWSTONE_TIME_BUDGET_S", "0.05")
    monkeypatch.setenv("YELLOWSTONE_VALIDATION_ROUNDS", "1")
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "fast")
    yield made
    for name in made:
        unregister_backend(name)


def _x(rng, n=2):
    return rng.standard_normal((n, 6)).astype(np.float32)


def _boosted_proxy(source="m"):
    model = NumpyModel(seed=int(np.random.default_rng().integers(1 << 30)))
    proxy = NumpyProxy(model, api="numpy.load", source=source)
    rng = np.random.default_rng()
    x = _x(rng)
    out = proxy(x)
    assert proxy._ys.state == "boosted" and proxy._ys.boosted.backend == "fast"
    np.testing.assert_allclose(out[0], model.run({"x": x})[0], rtol=1e-5)
    return proxy, model, rng


def test_released_model_leaves_the_registry(fakes):
    proxy, model, _ = _boosted_proxy(source="released-model")
    state = proxy._ys
    refs = [weakref.ref(state.boosted), weakref.ref(model), weakref.ref(state)]
    assert state in REGISTRY.live()
    del proxy, model, state
    gc.collect()
    assert [r() for r in refs] == [None, None, None]  # proxy, boosted model, original: gone
    assert all(s.source != "released-model" for s in REGISTRY.live())
    (entry,) = [e for e in REGISTRY.snapshot() if e["source"] == "released-model"]
    assert entry["released"] and entry["backend"] == "fast" and entry["calls"]["boosted"] == 1


def test_bad_request_from_the_boosted_call_keeps_its_class(fakes, monkeypatch):
    proxy, model, rng = _boosted_proxy()

    def reject(feeds):
        raise BadRequestError("input 'x': values out of range")

    monkeypatch.setattr(proxy._ys.boosted, "run", reject)
    native_before = model.native_calls
    with pytest.raises(BadRequestError) as info:
        proxy(_x(rng))
    assert type(info.value) is BadRequestError and info.value.http_status == 400
    assert info.value.grpc_code == "INVALID_ARGUMENT"
    assert model.native_calls == native_before  # not retried on the original
    assert proxy._ys.calls["runtime"] == proxy._ys.calls["rejected"] == 0


def test_runtime_failure_takes_the_one_fallback_path(fakes, monkeypatch, caplog):
    proxy, model, rng = _boosted_proxy()

    def broken(feeds):
        raise RuntimeError("device lost")

    monkeypatch.setattr(proxy._ys.boosted, "run", broken)
    before = metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime")
    with caplog.at_level(logging.DEBUG, logger="yellowstone.interpose"):
        for _ in range(3):
            x = _x(rng)
            np.testing.assert_allclose(proxy(x)[0], model.run({"x": x})[0], rtol=1e-6)
    assert metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime") == before + 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and r.name.startswith("yellowstone.interpose")]  # not the boost's (a weak-reference note)
    assert len(warnings) == 1 and "device lost" in warnings[0].getMessage()
    assert "fast" in warnings[0].getMessage()
    assert proxy._ys.calls == {"boosted": 1, "original": 3, "rejected": 0, "runtime": 3}


def test_call_outside_the_compiled_contract_is_served_by_the_original(fakes):
    proxy, model, rng = _boosted_proxy()
    before = metrics.get(metrics.FALLBACKS, reason="rejected")
    x = rng.standard_normal((2, 6))  # float64: the boosted model takes float32 only
    np.testing.assert_allclose(proxy(x)[0], model.run({"x": x})[0])
    assert metrics.get(metrics.FALLBACKS, reason="rejected") == before + 1
    assert proxy._ys.calls["rejected"] == 1 and proxy._ys.calls["original"] == 1


def test_kill_switch_any_case_serves_native(fakes, monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKEND", "NATIVE")
    model = NumpyModel()
    proxy = NumpyProxy(model, api="numpy.load", source="killed")
    x = _x(np.random.default_rng())
    out = proxy(x)
    np.testing.assert_allclose(out[0], model.run({"x": x})[0])
    assert proxy._ys.state == "native" and proxy._ys.boosted.backend == "native"
    assert proxy._ys.calls["boosted"] == 0 and proxy._ys.calls["original"] == 1
    assert fakes["fast"].compiles == 0


def test_backends_variable_restricts_the_candidates(fakes, monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "slow")  # "fast" is registered, but not named
    proxy = NumpyProxy(NumpyModel(), api="numpy.load", source="restricted")
    proxy(_x(np.random.default_rng()))
    assert {c.backend for c in proxy._ys.boosted.report.candidates} == {"native", "slow"}
    assert fakes["fast"].compiles == 0 and fakes["slow"].compiles >= 1
