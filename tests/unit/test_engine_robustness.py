"""A boost run survives what it finds on disk: failing cached artifacts, malformed decisions,
malformed artifact directories; and it leaves no temporary directory behind."""

from __future__ import annotations

import gc
import json
import logging

import numpy as np
import pytest

import yellowstone
from yellowstone import metrics
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.cache import ArtifactCache, write_manifest
from yellowstone.errors import CompilationError

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1)


@pytest.fixture
def fakes(cache_dir):
    made = {"fast": FakeBackend("fast"), "slow": FakeBackend("slow", delay=0.002)}
    for name, backend in made.items():
        register_backend(name, backend)
    yield made
    for name in made:
        unregister_backend(name)


@pytest.fixture
def discarded(monkeypatch):
    """Keys passed to ArtifactCache.discard (which still discards)."""
    keys: list[str] = []
    original = ArtifactCache.discard

    def spy(self, key):
        keys.append(key)
        original(self, key)

    monkeypatch.setattr(ArtifactCache, "discard", spy)
    return keys


def _warnings(caplog):
    """Warnings, less the weak-reference one that random inputs may draw from NumpyModel."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING
            and "reference output" not in r.getMessage()]


@pytest.mark.parametrize("failure", ["load raises RuntimeError", "load raises CompilationError",
                                     "check run raises"])
def test_cached_artifact_that_fails_is_discarded_and_rebuilt(fakes, discarded, caplog, failure):
    model = NumpyModel()
    first = yellowstone.boost(model, backends="fast", **FAST)
    assert first.backend == "fast" and fakes["fast"].compiles == 1
    if failure == "load raises RuntimeError":
        fakes["fast"].fail_load = RuntimeError("mmap failed")
    elif failure == "load raises CompilationError":
        fakes["fast"].fail_load = CompilationError("fast: stale artifact")
    else:
        fakes["fast"].fail_at_run = [1]  # the loaded artifact's first run (its check) fails
    before = metrics.get(metrics.FALLBACKS, backend="fast", reason="cache")
    with caplog.at_level(logging.WARNING):
        again = yellowstone.boost(model, backends="fast", **FAST)
    assert again.backend == "fast" and again.report.cache == "miss"
    assert fakes["fast"].compiles == 2  # rebuilt by a fresh search
    assert discarded  # the entry is gone: a check-run failure would else be a cache hit
    assert metrics.get(metrics.FALLBACKS, backend="fast", reason="cache") == before + 1
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "cached fast artifact discarded" in warnings[0].getMessage()
    x = {"x": np.random.default_rng(5).standard_normal((3, 6)).astype(np.float32)}
    np.testing.assert_allclose(again.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decision", [
    {}, [1, 2], "fast",
    {"backend": 3, "buckets": None, "report": {}},
    {"backend": "gone", "buckets": None, "report": {}},
    {"backend": "fast", "buckets": "b1", "report": {}},
    {"backend": "fast", "buckets": [0], "report": {}},
    {"backend": "fast", "buckets": [True], "report": {}},
    {"backend": "fast", "buckets": None, "report": [1]},
    {"backend": "fast", "buckets": None, "report": {"candidates": [{"status": "ok"}]}},
], ids=repr)
def test_malformed_decision_is_a_miss(fakes, monkeypatch, caplog, decision):
    model = NumpyModel()
    yellowstone.boost(model, backends="fast", **FAST)
    stored: list = []
    original_put = ArtifactCache.put_decision
    monkeypatch.setattr(ArtifactCache, "get_decision", lambda self, key: decision)
    monkeypatch.setattr(ArtifactCache, "put_decision",
                        lambda self, key, d: (stored.append(d), original_put(self, key, d)))
    with caplog.at_level(logging.WARNING):
        again = yellowstone.boost(model, backends="fast", **FAST)
    assert again.backend == "fast"
    assert [c.backend for c in again.report.candidates] == ["native", "fast"]
    assert any("ignoring the cached decision" in r.getMessage() for r in _warnings(caplog))
    assert fakes["fast"].compiles == 1  # the artifact itself was fine: a cache hit
    assert again.report.speedup is not None
    # the fresh search's decision replaces the malformed one
    assert len(stored) == 1 and stored[0]["backend"] == "fast"


@pytest.mark.parametrize("mutate, says", [
    (lambda m: m.pop("hardware"), "no 'hardware'"),
    (lambda m: m.pop("backend_version"), "no 'backend_version'"),
    (lambda m: m.update(dynamic_batch="yes"), "'dynamic_batch' is str"),
    (lambda m: m.update(buckets="b1"), "'buckets' is str"),
    (lambda m: m.update(dynamic_batch=False, buckets=[0]), "not all batch sizes"),
    (lambda m: m.update(report=None), "'report' is NoneType"),
    (lambda m: m.update(format="1"), "artifact format '1'"),
], ids=["no-hardware", "no-backend-version", "bool-as-str", "buckets-str", "bucket-0",
        "report-null", "format-str"])
def test_malformed_artifact_dir_falls_back_to_compiling(fakes, tmp_path, mutate, says):
    model = NumpyModel()
    out = yellowstone.boost(model, backends="fast", cache=False, **FAST).save(tmp_path / "a")
    meta = json.loads((out / "yellowstone.json").read_text())
    mutate(meta)
    (out / "yellowstone.json").write_text(json.dumps(meta))
    write_manifest(out, "x", {})
    compiles = fakes["fast"].compiles
    before = metrics.get(metrics.FALLBACKS, reason="artifact")
    boosted = yellowstone.boost(model, backends="fast", cache=False, artifact_dir=out, **FAST)
    assert boosted.backend == "fast" and boosted.report.cache == "miss"
    assert says in boosted.report.fallback_reason
    assert metrics.get(metrics.FALLBACKS, reason="artifact") == before + 1
    assert fakes["fast"].compiles == compiles + 1


def test_artifact_dir_that_does_not_load_falls_back_to_compiling(fakes, tmp_path):
    model = NumpyModel()
    out = yellowstone.boost(model, backends="fast", cache=False, **FAST).save(tmp_path / "a")
    fakes["fast"].fail_load = RuntimeError("wrong ABI")
    boosted = yellowstone.boost(model, backends="fast", cache=False, artifact_dir=out, **FAST)
    assert boosted.backend == "fast"
    assert "does not load: RuntimeError: wrong ABI" in boosted.report.fallback_reason


def test_uncached_builds_live_as_long_as_the_model(fakes, monkeypatch, tmp_path):
    workdirs = {}
    for name, backend in fakes.items():
        def record(model, request, workdir, _compile=backend.compile, _name=name):
            workdirs[_name] = workdir
            return _compile(model, request, workdir)
        monkeypatch.setattr(backend, "compile", record)
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="slow,fast", cache=False, **FAST)
    assert boosted.backend == "fast"
    assert not workdirs["slow"].exists()  # the loser's build is gone after the search
    assert workdirs["fast"].exists()
    boosted.save(tmp_path / "shipped")  # the winner's files are there to ship
    x = {"x": np.random.default_rng(2).standard_normal((2, 6)).astype(np.float32)}
    np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
    del boosted
    gc.collect()
    assert not workdirs["fast"].exists()
