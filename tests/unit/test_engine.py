"""Selection, validation, fallback, kill switch, buckets and artifact directories, on fakes."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import yellowstone
from yellowstone import metrics
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.config import BoostConfig
from yellowstone.errors import BadRequestError, ToleranceError

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1)


@pytest.fixture
def fakes(cache_dir):
    made = {
        "fast": FakeBackend("fast"),
        "slow": FakeBackend("slow", delay=0.002),
        "wrong": FakeBackend("wrong", offset=0.5),
        "broken": FakeBackend("broken", fail_compile=True),
        "absent": FakeBackend("absent", available=False),
    }
    for name, backend in made.items():
        register_backend(name, backend)
    yield made
    for name in made:
        unregister_backend(name)


def test_picks_fastest_valid_and_explains_every_loser(fakes):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="slow,fast,wrong,broken,absent", **FAST)
    rep = boosted.report
    status = {c.backend: c.status for c in rep.candidates}
    assert boosted.backend == "fast" and rep.chosen == "fast"
    assert status == {"native": "ok", "slow": "ok", "fast": "chosen", "wrong": "rejected",
                      "broken": "failed", "absent": "unavailable"}
    assert "slower" in rep.candidate("slow").reason
    assert "FakeOp" in rep.candidate("broken").reason
    assert "switched off" in rep.candidate("absent").reason
    # the rejected candidate names both outputs: every mismatch is collected
    assert "y:" in rep.candidate("wrong").reason and "s:" in rep.candidate("wrong").reason
    assert rep.candidate("fast").max_abs_err < 1e-5
    x = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
    got, ref = boosted.run({"x": x}), model.run({"x": x})
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)
    assert fakes["fast"].compiles == 1


def test_report_json_contract(fakes):
    rep = yellowstone.boost(NumpyModel(), backends="fast,wrong", **FAST).report.to_dict()
    assert {"model", "chosen", "precision", "cache", "load_s", "candidates"} <= set(rep)
    for cand in rep["candidates"]:
        assert {"backend", "status", "reason", "compile_s", "max_abs_err", "p50_ms"} <= set(cand)
    json.dumps(rep)


def test_all_candidates_fail_serves_native_and_says_so(fakes, caplog):
    before = metrics.get(metrics.FALLBACKS, reason="compile")
    with caplog.at_level(logging.WARNING):
        boosted = yellowstone.boost(NumpyModel(), backends="wrong,broken", **FAST)
    assert boosted.backend == "native"
    assert "wrong rejected" in boosted.report.fallback_reason
    assert "broken failed" in boosted.report.fallback_reason
    assert metrics.get(metrics.FALLBACKS, reason="compile") == before + 1
    assert any("serving on native" in r.getMessage() for r in caplog.records)


def test_validation_error_lists_each_output(fakes):
    from yellowstone.judge import validate

    model = NumpyModel()
    compiled = {None: fakes["wrong"].compile(model, _req(), _tmp(model))}
    feeds = model.random_feeds(batch=2, seed=1)
    with pytest.raises(ToleranceError) as exc:
        validate("wrong", model, compiled, BoostConfig(), [("set", feeds, model.run(feeds))])
    assert len(exc.value.mismatches) == 2


def test_kill_switch_never_compiles(fakes, monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKEND", "native")
    boosted = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
    assert boosted.backend == "native"
    assert fakes["fast"].compiles == 0


def test_runtime_failure_falls_back_per_call_then_opens_the_breaker(fakes, caplog):
    fakes["fast"].fail_at_run = [0]
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="fast", max_runtime_failures=2, **FAST)
    assert boosted.backend == "fast"
    fakes["fast"].fail_at_run[0] = 5
    x = {"x": np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)}
    before = metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime")
    with caplog.at_level(logging.WARNING):
        first = boosted.run(x)
        assert boosted.backend == "fast"  # one failure: only that call went native
        boosted.run(x)
    np.testing.assert_allclose(first[0], model.run(x)[0], rtol=1e-6)
    assert boosted.backend == "native"  # the breaker is open (tests/unit/test_breaker.py)
    assert "failed 2 times in a row" in boosted.report.fallback_reason
    assert metrics.get(metrics.FALLBACKS, backend="fast", reason="runtime") == before + 2
    assert sum("served by native" in r.getMessage() for r in caplog.records) == 2


def test_bad_requests_are_client_errors(fakes):
    boosted = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
    rng = np.random.default_rng(0)
    cases = [{"x": rng.standard_normal((2, 5)).astype(np.float32)},   # wrong width
             {"x": rng.standard_normal((2, 6))},                       # float64
             {"y": rng.standard_normal((2, 6)).astype(np.float32)},    # wrong name
             {}]
    for feeds in cases:
        with pytest.raises(BadRequestError) as exc:
            boosted.run(feeds)
        assert exc.value.http_status == 400


def test_buckets_pad_and_chunk(cache_dir):
    backend = FakeBackend("static", dynamic_batch=False)
    register_backend("static", backend)
    try:
        model = NumpyModel()
        boosted = yellowstone.boost(model, backends="static", batch_sizes=(1, 4), **FAST)
        assert boosted.backend == "static"
        assert boosted.report.candidate("static").buckets == [1, 4]
        assert backend.compiles == 2
        rng = np.random.default_rng(1)
        for n in (1, 3, 4, 9):
            x = {"x": rng.standard_normal((n, 6)).astype(np.float32)}
            got, ref = boosted.run(x), model.run(x)
            assert got[0].shape == (n, 3)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
        assert backend.compiles == 2  # never a compile per request
    finally:
        unregister_backend("static")


def test_artifact_dir_round_trip_and_rejections(fakes, tmp_path, caplog):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="fast", cache=False, **FAST)
    out = boosted.save(tmp_path / "art")
    compiles = fakes["fast"].compiles
    again = yellowstone.boost(model, backends="fast", cache=False, artifact_dir=out, **FAST)
    assert again.report.cache == "artifact" and again.backend == "fast"
    assert fakes["fast"].compiles == compiles
    # tampered file: rejected with a clear warning, compiled here instead
    weights = next((out / "artifacts").rglob("weights.npz"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with caplog.at_level(logging.WARNING):
        third = yellowstone.boost(model, backends="fast", cache=False, artifact_dir=out, **FAST)
    assert third.report.cache == "miss" and third.backend == "fast"
    assert "hash mismatch" in third.report.fallback_reason
    assert fakes["fast"].compiles == compiles + 1


def test_artifact_for_other_hardware_recompiles_visibly(fakes, tmp_path):
    from yellowstone.cache import write_manifest

    model = NumpyModel()
    out = yellowstone.boost(model, backends="fast", cache=False, **FAST).save(tmp_path / "a")
    meta = json.loads((out / "yellowstone.json").read_text())
    meta["hardware"] = "0000000000000000"
    (out / "yellowstone.json").write_text(json.dumps(meta))
    write_manifest(out, meta["model_fingerprint"], {})
    before = metrics.get(metrics.FALLBACKS, reason="artifact")
    boosted = yellowstone.boost(model, backends="fast", cache=False, artifact_dir=out, **FAST)
    assert "compiled for hardware 0000000000000000" in boosted.report.fallback_reason
    assert metrics.get(metrics.FALLBACKS, reason="artifact") == before + 1


def test_save_refuses_to_overwrite(fakes, tmp_path):
    boosted = yellowstone.boost(NumpyModel(), backends="fast", cache=False, **FAST)
    target = tmp_path / "user"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(yellowstone.errors.ConfigError):
        boosted.save(target)
    assert (target / "keep.txt").read_text() == "user data"


def _req():
    from yellowstone.backends import CompileRequest

    return CompileRequest(batch=None, precision="fp32")


def _tmp(model):
    d = model.workdir / "t"
    d.mkdir(exist_ok=True)
    return d


def test_degenerate_reference_is_flagged(fakes):
    model = NumpyModel()
    model.w2[:] = 0.0  # y is identically zero: any backend would "match" it
    boosted = yellowstone.boost(model, backends="fast", **FAST)
    assert len(boosted.report.warnings) == 1 and "'y'" in boosted.report.warnings[0]
    assert "warning:" in boosted.report.table()


def test_auto_leaves_out_tagged_backends_with_the_reason(fakes, monkeypatch):
    import yellowstone.engine as engine

    tagged = FakeBackend("tagged", auto_excluded="left out of auto: measured slower")
    register_backend("tagged", tagged)
    try:
        monkeypatch.setattr(engine, "backend_names", lambda: ["native", "fast", "tagged"])
        rep = yellowstone.boost(NumpyModel(), backends="auto", **FAST).report
        assert rep.candidate("tagged").status == "unavailable"
        assert rep.candidate("tagged").reason == "left out of auto: measured slower"
        assert rep.chosen == "fast" and tagged.compiles == 0
        # named explicitly, a tagged backend is tried
        named = yellowstone.boost(NumpyModel(), backends="tagged", cache=False, **FAST).report
        assert named.candidate("tagged").status == "chosen" and tagged.compiles == 1
    finally:
        unregister_backend("tagged")


def test_native_calls_are_timed_too(cache_dir, monkeypatch):
    """Dashboards see latency whatever serves: the framework's calls emit inference timings."""
    monkeypatch.setenv("YELLOWSTONE_BACKEND", "native")

    def native_count():
        return sum(t[0] for name, _, labels, _, t in metrics.series()
                   if name == metrics.INFERENCE_MS and t and labels.get("backend") == "native"
                   and labels.get("model") == "numpy-mlp")

    model = NumpyModel()
    boosted = yellowstone.boost(model, **FAST)
    assert boosted.backend == "native"
    before = native_count()
    boosted.run(model.random_feeds(batch=2, seed=3))
    assert native_count() == before + 1


def test_each_call_says_which_backend_answered_it(fakes):
    fakes["fast"].fail_at_run = [0]
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="fast", max_runtime_failures=3, **FAST)
    x = {"x": np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)}
    assert boosted.run_answered(x)[1] == "fast"
    fakes["fast"].fail_at_run[0] = 1
    outputs, answered = boosted.run_answered(x)
    assert answered == "native" and boosted.backend == "fast"  # one failure: breaker closed
    np.testing.assert_allclose(outputs[0], model.run(x)[0], rtol=1e-6)
    assert boosted.run_answered(x)[1] == "fast"
