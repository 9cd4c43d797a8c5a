"""The content-addressed cache: warm starts, corrupt entries, and concurrent writers."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

import yellowstone
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.cache import ArtifactCache, make_key

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1)


def test_second_boost_is_a_cache_hit_without_compiling(cache_dir):
    backend = FakeBackend("fast")
    register_backend("fast", backend)
    try:
        first = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        assert first.report.cache == "miss" and backend.compiles == 1
        second = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        assert second.report.cache == "hit" and second.backend == "fast"
        assert backend.compiles == 1 and backend.loads == 1
        assert second.report.load_s >= 0
        # a different model (other weights) is a different key
        third = yellowstone.boost(NumpyModel(seed=1), backends="fast", **FAST)
        assert third.report.cache == "miss" and backend.compiles == 2
    finally:
        unregister_backend("fast")


def test_corrupt_entry_is_discarded_and_rebuilt(cache_dir, caplog):
    backend = FakeBackend("fast")
    register_backend("fast", backend)
    try:
        yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        entry = next(Path(cache_dir, "artifacts").rglob("weights.npz"))
        entry.write_bytes(b"garbage")
        with caplog.at_level(logging.WARNING):
            again = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        assert again.backend == "fast"
        assert backend.compiles == 2
        assert any("corrupt entry" in r.getMessage() for r in caplog.records)
        x = {"x": np.ones((2, 6), np.float32) * 0.5}
        np.testing.assert_allclose(again.run(x)[0], NumpyModel().run(x)[0], rtol=1e-5)
    finally:
        unregister_backend("fast")


def test_unreadable_decision_is_ignored(cache_dir, caplog):
    backend = FakeBackend("fast")
    register_backend("fast", backend)
    try:
        yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        for f in Path(cache_dir, "decisions").glob("*.json"):
            f.write_text("{not json")
        with caplog.at_level(logging.WARNING):
            again = yellowstone.boost(NumpyModel(), backends="fast", **FAST)
        assert again.backend == "fast"
        assert any("unreadable decision" in r.getMessage() for r in caplog.records)
    finally:
        unregister_backend("fast")


def _worker(cache_root: str, log: str, barrier, results) -> None:
    register_backend("slowcompile", FakeBackend("slowcompile", compile_log=Path(log),
                                                compile_sleep=0.5))
    os.environ["YELLOWSTONE_CACHE_DIR"] = cache_root
    barrier.wait()
    boosted = yellowstone.boost(NumpyModel(), backends="slowcompile", **FAST)
    x = {"x": np.full((2, 6), 0.25, np.float32)}
    results.put((boosted.backend, boosted.run(x)[0].tolist()))


def test_concurrent_writers_in_several_processes_compile_once(tmp_path):
    # spawn, not fork: by now the test process has torch, TF and gRPC threads, and a child forked
    # while one of them holds a lock can hang for ever (and a hung non-daemon child would then hold
    # the whole run open at exit). Daemon children are killed in ``finally`` whatever happens.
    ctx = mp.get_context("spawn")
    log = tmp_path / "compiles.log"
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), str(log), barrier, results),
                         daemon=True)
             for _ in range(4)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        assert [p.exitcode for p in procs] == [0] * 4
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
    outs = [results.get(timeout=5) for _ in procs]
    assert {backend for backend, _ in outs} == {"slowcompile"}
    assert len({str(o) for _, o in outs}) == 1
    assert len(log.read_text().splitlines()) == 1  # one process compiled, three loaded
    assert not list((tmp_path / "c" / "tmp").iterdir())  # no half-written entries left


def test_keys_ignore_paths_and_change_with_content():
    a = make_key(model="abc", backend="x", precision="fp32")
    assert a == make_key(precision="fp32", backend="x", model="abc")
    assert a != make_key(model="abd", backend="x", precision="fp32")


def test_store_is_atomic_on_failure(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build(d: Path):
        (d / "half").write_text("x")
        raise RuntimeError("compiler crashed")

    try:
        cache.store("k" * 64, build, {})
    except RuntimeError:
        pass
    assert cache.lookup("k" * 64) is None
    assert not list((tmp_path / "tmp").iterdir())
