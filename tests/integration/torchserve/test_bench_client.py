"""The TorchServe benchmarks' client and frontend warm-up, against a real TorchServe.

``benchmarks/ts_frontend.py`` archives an echo model that every benchmark server also serves,
warms the frontend on it, and gives each client thread a keep-alive ``http.client``
connection; ``torchserve_bench.block`` shares those connections among its threads.
"""

from __future__ import annotations

import json
import random

import pytest
from tsutil import TorchServe

from benchmarks import torchserve_bench
from benchmarks.ts_frontend import WARMUP_MODEL, Client, build_warmup_archive, warm_frontend

pytestmark = [pytest.mark.server]


@pytest.fixture(scope="module")
def server(tmp_path_factory, ys_cache):
    root = tmp_path_factory.mktemp("ts-bench-client")
    ts = TorchServe(root, ys_cache, extra_env={"ECHO_SLEEP_MS": "3"})
    try:
        assert build_warmup_archive(ts.store) == WARMUP_MODEL
        ts.register(f"{WARMUP_MODEL}.mar")
        yield ts
    finally:
        ts.stop()


def test_echo_model_holds_each_request(server):
    body = random.randbytes(2048)
    client = Client(f"{server.inference}/predictions/{WARMUP_MODEL}")
    try:
        held = [float(client.post_ok(body)) for _ in range(3)]  # one connection, three calls
    finally:
        client.close()
    assert all(h >= 3.0 for h in held), held  # the handler slept ECHO_SLEEP_MS on each


def test_client_reports_a_refused_request(server):
    client = Client(f"{server.inference}/predictions/no_such_model")
    try:
        status, body, _ = client.post(b"x")
        assert status == 404
        assert "no_such_model" in json.loads(body)["message"]
        with pytest.raises(RuntimeError, match="HTTP 404"):
            client.post_ok(b"x")
    finally:
        client.close()


def test_warm_frontend_counts_its_requests(server):
    out = warm_frontend(server.inference, random.randbytes(512), n=120)
    assert out["requests"] == 120
    assert out["first100_ms"] > 0 and out["last100_ms"] > 0


def test_block_shares_connections_among_threads(server):
    # More requests than connections, each connection used by one thread at a time.
    url = f"{server.inference}/predictions/{WARMUP_MODEL}"
    lat, wall = torchserve_bench.block(url, [b"a" * 100, b"b" * 200], concurrency=4, n=17)
    assert len(lat) == 17 and all(x > 0 for x in lat)
    assert wall > 0
