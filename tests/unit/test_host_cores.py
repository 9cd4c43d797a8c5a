"""One cgroup-aware core count (``yellowstone.serving.host_cores``) sizes every server pool: a pod
limited to 5 CPUs on a 64-core node sizes TF Serving's REST, gRPC and batch threads for 5."""

from __future__ import annotations

import argparse
import functools

import pytest

import yellowstone.hardware as hw
from yellowstone import serving


@pytest.fixture
def quota_pod(tmp_path, monkeypatch):
    """A cgroup v2 ``cpu.max`` of 4.5 CPUs (rounded up: 5) on a 64-core affinity mask."""
    (tmp_path / "cpu.max").write_text("450000 100000\n")
    monkeypatch.setattr(hw, "affinity_cores", lambda: 64)
    monkeypatch.setattr(hw, "available_cores",
                        functools.partial(hw.available_cores, str(tmp_path)))
    return 5


def test_host_cores_follows_the_cgroup_quota(quota_pod):
    assert serving.host_cores() == quota_pod
    assert serving.plan_threads().cores == quota_pod
    assert serving.plan_threads(workers=2).threads == 2


def test_host_cores_without_a_quota_is_the_affinity_mask(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    monkeypatch.setattr(hw, "affinity_cores", lambda: 64)
    monkeypatch.setattr(hw, "available_cores",
                        functools.partial(hw.available_cores, str(tmp_path)))
    assert serving.host_cores() == 64


def test_tfserving_thread_defaults_use_host_cores(quota_pod):
    from yellowstone.plugins.tfserving.batching.options import SchedulerOptions
    from yellowstone.plugins.tfserving.flags import grpc_threads, rest_threads

    args = argparse.Namespace(rest_api_num_threads=0, grpc_max_threads=0)
    assert rest_threads(args) == grpc_threads(args) == 4 * quota_pod
    assert SchedulerOptions().num_batch_threads == quota_pod
    given = argparse.Namespace(rest_api_num_threads=3, grpc_max_threads=5)
    assert (rest_threads(given), grpc_threads(given)) == (3, 5)


def test_tfserving_rest_deadline_pool_uses_host_cores(quota_pod, monkeypatch):
    from yellowstone.plugins.tfserving import listeners, rest

    seen = {}

    def fake_make_server(view, host, port, **kwargs):
        seen["view"] = view
        return None, port

    monkeypatch.setattr(rest, "make_server", fake_make_server)
    listeners.start_rest(object(), host="127.0.0.1", port=0, threads=0, timeout_ms=100)
    pool = seen["view"]._pool
    try:
        assert pool._max_workers == 4 * quota_pod
    finally:
        pool.shutdown()
