"""follow_load: with several workers, a call made while no other worker is busy uses every core."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import yellowstone
from yellowstone import hardware, loadshare
from yellowstone.backends import register_backend, unregister_backend

from .fakes import FakeBackend, NumpyModel
from .test_loadshare import Peer

pytest.importorskip("fcntl")

FAST = dict(time_budget_s=0.05, validation_rounds=1)


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(hardware, "available_cores", lambda: 4)
    monkeypatch.setattr(hardware, "affinity_cores", lambda: 4)


@pytest.fixture
def board(tmp_path, monkeypatch):
    made = loadshare.BusyBoard(tmp_path / "board")
    monkeypatch.setattr(loadshare, "board", lambda: made)
    yield made
    made.close()


@pytest.fixture
def owner(cache_dir):
    backend = FakeBackend("owner")
    backend.owns_threads = True
    register_backend("owner", backend)
    yield backend
    unregister_backend("owner")


@pytest.fixture
def pooled(cache_dir):
    backend = FakeBackend("pooled")  # a process-wide pool (torch's): a copy would not help
    register_backend("pooled", backend)
    yield backend
    unregister_backend("pooled")


def _calls(buckets) -> int:
    return sum(c.calls for c in buckets.values())


def test_alone_calls_run_on_every_core_and_busy_ones_on_the_share(four_cores, board, owner,
                                                                  tmp_path, caplog):
    model = NumpyModel()
    with caplog.at_level(logging.INFO, logger="yellowstone.engine"):
        boosted = yellowstone.boost(model, backends="owner", workers=2, **FAST)
    assert boosted.backend == "owner" and boosted.wide_backends == ("owner",)
    assert "owner loaded again with 4 threads" in caplog.text
    narrow = boosted._routes["owner"].compiled
    wide = boosted._wide["owner"]
    assert {c.threads for c in narrow.values()} == {2}
    assert {c.threads for c in wide.values()} == {4}

    x = np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)
    expected = model.run({"x": x})
    before_wide, before_narrow = _calls(wide), _calls(narrow)
    got = boosted.run({"x": x})
    assert _calls(wide) == before_wide + 1 and _calls(narrow) == before_narrow
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)

    peer = Peer(board.path)  # another worker, busy
    try:
        assert peer.say("busy") == "ok"
        got = boosted.run({"x": x})
        assert _calls(narrow) == before_narrow + 1 and _calls(wide) == before_wide + 1
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
        assert peer.say("idle") == "ok"
        boosted.run({"x": x})
        assert _calls(wide) == before_wide + 2
    finally:
        peer.close()
    assert board.others_busy() == 0


@pytest.mark.parametrize("config", [dict(workers=1), dict(workers=2, threads=1),
                                    dict(workers=2, follow_load=False)])
def test_no_wide_copy_where_the_share_is_already_every_core_or_fixed(four_cores, board, owner,
                                                                      config):
    boosted = yellowstone.boost(NumpyModel(), backends="owner", **FAST, **config)
    assert boosted.backend == "owner" and boosted.wide_backends == ()


def test_backends_on_a_process_wide_pool_keep_their_share(four_cores, board, pooled):
    boosted = yellowstone.boost(NumpyModel(), backends="pooled", workers=2, **FAST)
    assert boosted.backend == "pooled" and boosted.wide_backends == ()


def test_a_wide_copy_that_does_not_load_is_left_out_with_a_warning(four_cores, board, owner,
                                                                   caplog):
    owner.fail_load = RuntimeError("out of memory")  # compile works; loading again does not
    with caplog.at_level(logging.WARNING, logger="yellowstone.engine"):
        boosted = yellowstone.boost(NumpyModel(), backends="owner", workers=2, **FAST)
    assert boosted.backend == "owner" and boosted.wide_backends == ()
    assert "owner with 4 threads not loaded" in caplog.text and "out of memory" in caplog.text
    x = np.ones((2, 6), np.float32) * 0.5
    assert boosted.run({"x": x})[0].shape == (2, 3)


def test_the_cached_decision_gets_its_wide_copy_too(four_cores, board, owner):
    yellowstone.boost(NumpyModel(), backends="owner", workers=2, **FAST)
    again = yellowstone.boost(NumpyModel(), backends="owner", workers=2, **FAST)
    assert again.report.cache == "hit" and again.wide_backends == ("owner",)


def test_follow_load_is_a_config_key_flag_and_variable():
    from yellowstone.config import BoostConfig
    from yellowstone.serving import boost_config

    assert BoostConfig().follow_load is True
    assert BoostConfig.from_dict({"follow_load": "false"}).follow_load is False
    assert BoostConfig.from_env({"YELLOWSTONE_FOLLOW_LOAD": "off"}).follow_load is False
    assert boost_config(flags={"follow_load": "no"}).follow_load is False


def test_calls_the_framework_serves_run_in_the_native_scope(cache_dir, owner):
    import contextlib

    owner.fail_at_run = [0]
    model = NumpyModel()
    boosted = yellowstone.boost(model, backends="owner", **FAST)
    assert boosted.backend == "owner" and boosted.own_thread_pools
    entered = []

    @contextlib.contextmanager
    def scope():
        entered.append(model.native_calls)
        yield

    boosted.native_scope = scope
    x = {"x": np.random.default_rng(5).standard_normal((2, 6)).astype(np.float32)}
    boosted.run(x)
    assert entered == []  # the compiled backend answered
    owner.fail_at_run[0] = 1
    got = boosted.run(x)  # it fails once: the framework answers, inside the scope
    assert len(entered) == 1 and model.native_calls == entered[0] + 1
    np.testing.assert_allclose(got[0], model.run(x)[0], rtol=1e-6)


def test_a_process_wide_pool_or_native_is_not_an_own_pool(cache_dir, pooled):
    assert not yellowstone.boost(NumpyModel(), backends="pooled", **FAST).own_thread_pools
    assert not yellowstone.boost(NumpyModel(), backends="native", **FAST).own_thread_pools


def test_no_wide_copy_past_a_quarter_of_the_memory_limit(four_cores, board, owner, monkeypatch,
                                                          caplog):
    from yellowstone import engine

    monkeypatch.setattr(engine, "memory_limit_bytes", lambda: 1000)  # the fake's weights: >250 B
    with caplog.at_level(logging.INFO, logger="yellowstone.engine"):
        boosted = yellowstone.boost(NumpyModel(), backends="owner", workers=2, **FAST)
    assert boosted.backend == "owner" and boosted.wide_backends == ()
    assert "past a quarter of the memory limit" in caplog.text
    monkeypatch.setattr(engine, "memory_limit_bytes", lambda: 1 << 30)
    again = yellowstone.boost(NumpyModel(), backends="owner", workers=2, **FAST)
    assert again.wide_backends == ("owner",)


@pytest.mark.parametrize(("files", "expected"), [
    ({"memory.max": "2147483648\n"}, 2 << 30),
    ({"memory.max": "max\n"}, None),
    ({"memory/memory.limit_in_bytes": "1073741824\n"}, 1 << 30),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 "unlimited"
    ({}, None),
])
def test_the_memory_limit_is_read_from_either_cgroup_version(tmp_path, files, expected):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert hardware.memory_limit_bytes(str(tmp_path)) == expected
