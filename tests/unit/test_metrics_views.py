"""One metrics interface, three views: TF Serving's Prometheus text, KServe's collector and the
TorchServe bridge all show every ``yellowstone_*`` series the same way, through a runtime
fallback and the breaker's recovery."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

import yellowstone
from yellowstone import metrics
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.serving import telemetry

from .fakes import FakeBackend, NumpyModel, TorchServeContext

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from yellowstone.plugins.kserve.metrics import YellowstoneCollector  # noqa: E402
from yellowstone.plugins.torchserve.metrics import TorchServeMetrics, ts_name  # noqa: E402

CORE_SERIES = {v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str)
               and v.startswith("yellowstone_")}


def _parsed(text: str) -> dict[str, tuple[str, str, list]]:
    """Prometheus text as {family: (type, help, sorted samples)}."""
    return {f.name: (f.type, f.documentation,
                     sorted((s.name, sorted(s.labels.items()), s.value) for s in f.samples))
            for f in text_string_to_metric_families(text)}


def _collector_text() -> str:
    registry = prometheus_client.CollectorRegistry()
    registry.register(YellowstoneCollector())
    return prometheus_client.generate_latest(registry).decode()


def _for(model: str, views: dict[str, tuple[str, str, list]]) -> dict[str, list]:
    """The samples labelled ``model`` in each family: {sample name: [(labels, value)]}."""
    out: dict[str, list] = {}
    for _, _, samples in views.values():
        for name, labels, value in samples:
            if dict(labels).get("model") == model:
                out.setdefault(name, []).append(({k: v for k, v in labels if k != "model"}, value))
    return out


def test_every_core_series_is_described():
    assert CORE_SERIES == set(telemetry.SERIES)
    for series in telemetry.SERIES.values():
        assert series.kind in ("counter", "gauge", "timing") and series.help
    assert telemetry.describe("yellowstone_plugin_things_total", "count").kind == "counter"
    assert telemetry.describe("yellowstone_plugin_wait_ms", "ms").kind == "timing"


def test_torchserve_names_keep_their_spelling():
    names = {s.name: ts_name(s) for s in telemetry.SERIES.values()}
    assert names == {
        metrics.BACKEND_IN_USE: "YellowstoneBackendInUse",
        metrics.COMPILE_SECONDS: "YellowstoneCompileTime",
        metrics.LOAD_SECONDS: "YellowstoneLoadTime",
        metrics.FALLBACKS: "YellowstoneFallbacks",
        metrics.RECOVERIES: "YellowstoneRecoveries",
        metrics.INFERENCE_MS: "YellowstoneInferenceTime",
        metrics.CACHE_DISCARDS: "YellowstoneCacheDiscards",
    }


def test_text_and_collector_are_the_same_families():
    model = f"m-{uuid.uuid4().hex[:8]}"
    metrics.emit(metrics.FALLBACKS, 1, model=model, backend="openvino", reason="runtime")
    metrics.emit(metrics.RECOVERIES, 1, model=model, backend="openvino")
    metrics.emit(metrics.BACKEND_IN_USE, 0, "gauge", model=model, backend="openvino")
    metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model=model, backend="native")
    metrics.emit(metrics.CACHE_DISCARDS, 1, reason="manifest")
    metrics.emit(metrics.INFERENCE_MS, 0.25, "ms", model=model, backend="openvino")
    metrics.emit(metrics.INFERENCE_MS, 1e-7, "ms", model=model, backend="openvino")
    metrics.emit("yellowstone_plugin_things_total", 3, model=model, odd='a "quoted"\\ value\n')

    text, collected = telemetry.prometheus_text(), _collector_text()
    assert _parsed(text) == _parsed(collected)  # names, types, help, labels and values alike
    assert "# TYPE yellowstone_fallbacks_total counter" in text
    got = _for(model, _parsed(text))
    assert got["yellowstone_fallbacks_total"] == [({"backend": "openvino", "reason": "runtime"}, 1)]
    assert got["yellowstone_recoveries_total"] == [({"backend": "openvino"}, 1)]
    assert sorted(got["yellowstone_backend_in_use"], key=str) == [
        ({"backend": "native"}, 1), ({"backend": "openvino"}, 0)]
    assert got["yellowstone_inference_ms_count"] == [({"backend": "openvino"}, 2)]
    assert got["yellowstone_inference_ms_sum"] == [({"backend": "openvino"}, 0.25 + 1e-7)]  # exact
    assert got["yellowstone_inference_ms_last"] == [({"backend": "openvino"}, 1e-7)]
    assert got["yellowstone_plugin_things_total"] == [({"odd": 'a "quoted"\\ value\n'}, 3)]


def test_each_family_is_written_in_one_block():
    """The text format wants a family's lines together: a timing's summary lines, then its
    ``_last`` gauge, whatever the number of label sets."""
    for backend in ("openvino", "onnxruntime"):
        metrics.emit(metrics.INFERENCE_MS, 1.0, "ms", model="blocks", backend=backend)
    seen: list[str] = []
    for line in telemetry.prometheus_text().splitlines():
        if line.startswith("# TYPE "):
            seen.append(line.split()[2])
        elif not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            assert name in {seen[-1], *(f"{seen[-1]}_{s}" for s in ("count", "sum"))}, line
    assert len(seen) == len(set(seen))


@pytest.fixture
def flaky(cache_dir):
    backend = FakeBackend("flaky-s16")
    backend.fail_at_run = [0]
    register_backend("flaky-s16", backend)
    yield backend
    unregister_backend("flaky-s16")


def test_fallback_and_recovery_on_every_view(flaky):
    """A compiled call that fails twice opens the breaker; after the back-off the trial works:
    the text, the collector and the TorchServe bridge each count the runtime fallbacks and the
    recovery, and name the backend serving at each step (a gauge's 0 included)."""
    pytest.importorskip("ts")
    ctx = TorchServeContext()
    bridge = TorchServeMetrics(lambda: ctx, lambda: "flaky-s16").attach()
    try:
        model = NumpyModel(seed=16)
        model.name = "metrics-views"  # the series are process-wide: this test's model alone
        boosted = yellowstone.boost(model, backends="flaky-s16", max_runtime_failures=2,
                                    breaker_backoff_s=0.1, breaker_backoff_max_s=0.2,
                                    time_budget_s=0.05, validation_rounds=1)
        assert boosted.backend == "flaky-s16"
        x = {"x": np.random.default_rng().standard_normal((3, 6)).astype(np.float32)}
        flaky.fail_at_run[0] = 2
        for _ in range(2):
            np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
        assert boosted.backend == "native"
        fallen = _for(boosted.name, _parsed(telemetry.prometheus_text()))
        gauges_then = len(ctx.metrics.calls)
        time.sleep(0.15)
        np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
        assert boosted.backend == "flaky-s16"
    finally:
        bridge.detach()

    assert sorted(fallen["yellowstone_backend_in_use"], key=str) == [
        ({"backend": "flaky-s16"}, 0), ({"backend": "native"}, 1)]
    assert fallen["yellowstone_fallbacks_total"] == [({"backend": "flaky-s16", "reason": "runtime"}, 2)]
    assert "yellowstone_recoveries_total" not in fallen

    for text in (telemetry.prometheus_text(), _collector_text()):
        now = _for(boosted.name, _parsed(text))
        assert now["yellowstone_fallbacks_total"] == [({"backend": "flaky-s16", "reason": "runtime"}, 2)]
        assert now["yellowstone_recoveries_total"] == [({"backend": "flaky-s16"}, 1)]
        assert sorted(now["yellowstone_backend_in_use"], key=str) == [
            ({"backend": "flaky-s16"}, 1), ({"backend": "native"}, 0)]

    calls = ctx.metrics.calls

    def last_gauges(upto: int) -> dict[str, float]:
        return {c[3]["Backend"]: c[2] for c in calls[:upto] if c[1] == "YellowstoneBackendInUse"}

    assert last_gauges(gauges_then) == {"flaky-s16": 0, "native": 1}  # fallen back: not stale
    assert last_gauges(len(calls)) == {"flaky-s16": 1, "native": 0}  # recovered
    assert [c for c in calls if c[1] == "YellowstoneFallbacks"] == [
        ("counter", "YellowstoneFallbacks", 1, {"Backend": "flaky-s16", "Reason": "runtime"})] * 2
    assert [c for c in calls if c[1] == "YellowstoneRecoveries"] == [
        ("counter", "YellowstoneRecoveries", 1, {"Backend": "flaky-s16"})]
