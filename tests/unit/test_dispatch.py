"""Per-batch dispatch: each served batch size on its fastest backend, cached, shipped, budgeted."""

from __future__ import annotations

import collections
import json
import time

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.cache import ArtifactCache

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1, batch_sizes=(1, 8))
SLOW = 0.006  # a losing backend's delay; the framework costs 1 ms a call, a winner ~0


class BySize(FakeBackend):
    """A fake whose speed depends on the batch size (``delays``); counts the rows it served."""

    def __init__(self, name: str, delays: dict[int, float], *, pad_mb: float = 0.0, **kw):
        super().__init__(name, **kw)
        self.delays, self.pad_mb = delays, pad_mb
        self.served: collections.Counter[int] = collections.Counter()

    def compile(self, model, request, workdir):
        compiled = super().compile(model, request, workdir)
        if self.pad_mb:  # a bigger artifact on disk, for the memory budget
            (workdir / "pad.bin").write_bytes(b"\0" * int(self.pad_mb * 2**20))
        return compiled

    def _load(self, model, request, workdir):
        compiled = super()._load(model, request, workdir)
        run = compiled.run

        def timed(feeds):
            n = int(feeds["x"].shape[0])
            self.served[n] += 1
            time.sleep(self.delays.get(n, 0.0))
            return run(feeds)

        compiled.run = timed
        return compiled


@pytest.fixture
def fakes(cache_dir):
    made = {"small": BySize("small", {8: SLOW}), "big": BySize("big", {1: SLOW}, pad_mb=2)}
    for name, backend in made.items():
        register_backend(name, backend)
    yield made
    for name in made:
        unregister_backend(name)


def _check_routes(boosted, model, fakes, want: dict[int, str]) -> None:
    """Each request of batch n is served by ``want[n]`` with the framework's outputs."""
    rng = np.random.default_rng(11)
    for n, backend in want.items():
        for fake in fakes.values():
            fake.served.clear()
        x = {"x": rng.standard_normal((n, 6)).astype(np.float32)}
        got, ref = boosted.run(x), model.run(x)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-5)
        assert boosted.route_for(n) == backend
        served = {name for name, fake in fakes.items() if fake.served}
        assert served == ({backend} if backend != "native" else set()), (n, served)


def test_each_batch_size_goes_to_its_winner(fakes):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="small,big", **FAST)
    rep = boosted.report
    assert rep.chosen == "small" and boosted.backend == "small"  # the batch-1 winner
    assert rep.dispatch == {1: "small", 8: "big"}
    assert rep.candidate("small").status == "chosen"
    assert rep.candidate("big").status == "ok" and rep.candidate("big").reason.startswith(
        "serves batch 8")
    # nearest served size at or above the batch; past the largest, the largest's backend
    _check_routes(boosted, model, fakes, {1: "small", 3: "big", 8: "big", 20: "big"})
    assert "per batch: b1 small, b8 big" in rep.table()
    assert json.loads(rep.to_json())["dispatch"] == {"1": "small", "8": "big"}


def test_single_mode_keeps_one_backend(fakes):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="small,big", dispatch="single", **FAST)
    chosen = boosted.backend
    assert chosen in ("small", "big")
    assert boosted.report.dispatch == {1: chosen, 8: chosen}
    _check_routes(boosted, model, fakes, {1: chosen, 3: chosen, 8: chosen})
    assert "per batch" not in boosted.report.table()


def test_warm_start_restores_the_table(fakes):
    model = NumpyModel()
    first = yellowstone.boost(model, backends="small,big", **FAST)
    assert first.report.dispatch == {1: "small", 8: "big"}
    compiles = {n: f.compiles for n, f in fakes.items()}
    again = yellowstone.boost(model, backends="small,big", **FAST)
    assert again.report.cache == "hit" and again.report.dispatch == {1: "small", 8: "big"}
    assert {n: f.compiles for n, f in fakes.items()} == compiles
    assert fakes["small"].loads == 1 and fakes["big"].loads == 1
    _check_routes(again, model, fakes, {1: "small", 8: "big"})


def test_an_old_decision_without_a_dispatch_loads_as_single(fakes, monkeypatch):
    model = NumpyModel()
    yellowstone.boost(model, backends="small,big", **FAST)
    original = ArtifactCache.get_decision

    def old(self, key):
        decision = original(self, key)
        if decision is not None:
            decision = {k: v for k, v in decision.items() if k not in ("dispatch", "routes")}
            decision["report"] = {k: v for k, v in decision["report"].items() if k != "dispatch"}
        return decision

    monkeypatch.setattr(ArtifactCache, "get_decision", old)
    again = yellowstone.boost(model, backends="small,big", **FAST)
    assert again.report.cache == "hit" and again.report.dispatch == {1: "small", 8: "small"}
    assert fakes["big"].loads == 0
    _check_routes(again, model, fakes, {1: "small", 8: "small"})


@pytest.mark.parametrize("budget_mb, want", [(1, {1: "small", 8: "native"}),
                                             (3, {1: "small", 8: "big"})])
def test_the_memory_budget_limits_extra_backends(fakes, budget_mb, want):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="small,big", dispatch_memory_mb=budget_mb,
                                **FAST)
    # big's artifacts (2 MB) do not fit in 1 MB: batch 8 goes to the fastest backend kept
    assert boosted.report.dispatch == want
    if want[8] == "native":
        assert "dispatch_memory_mb=1" in boosted.report.candidate("big").reason
    _check_routes(boosted, model, fakes, want)


def test_save_ships_every_dispatched_backend(fakes, tmp_path):
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="small,big", cache=False, **FAST)
    out = boosted.save(tmp_path / "art")
    meta = json.loads((out / "yellowstone.json").read_text())
    assert meta["backend"] == "small" and meta["dispatch"] == {"1": "small", "8": "big"}
    assert set(meta["extras"]) == {"big"} and (out / "dispatch" / "big").is_dir()
    compiles = {n: f.compiles for n, f in fakes.items()}
    again = yellowstone.boost(model, backends="small,big", cache=False, artifact_dir=out, **FAST)
    assert again.report.cache == "artifact" and again.report.dispatch == {1: "small", 8: "big"}
    assert {n: f.compiles for n, f in fakes.items()} == compiles
    _check_routes(again, model, fakes, {1: "small", 8: "big"})


def test_a_failing_extra_falls_back_alone(fakes):
    model = NumpyModel()
    fakes["big"].fail_at_run = [0]
    boosted = yellowstone.boost(model, backends="small,big", max_runtime_failures=1, **FAST)
    fakes["big"].fail_at_run[0] = 5
    x = {"x": np.ones((8, 6), np.float32)}
    np.testing.assert_allclose(boosted.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
    assert boosted.report.dispatch == {1: "small", 8: "native"}  # what serves now
    assert boosted.backend == "small"
