"""``--enable_batching`` + ``--batching_parameters_file`` and ``--monitoring_config_file`` on a live server.

One server (module scope) serves the Keras test model on the shim (policy ``always``) with batching
on (up to 8 rows, a 300 ms window, one batch thread) and Prometheus on a custom path of the REST
port. Concurrent gRPC clients must be merged into boosted calls of more than one request, with
each client getting TensorFlow's answer for its own rows; the page must carry TF Serving's
metric names.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from tfs_server import TFServer, build_model, predict

pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

ATOL, RTOL = 1e-4, 1e-3
METRICS_PATH = "/tfs/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-batching")
    build_model("keras", root / "keras" / "1")
    (root / "batching.config").write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 300000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n"
    )
    (root / "monitoring.config").write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    with TFServer(root, "--model_name=keras", f"--model_base_path={root / 'keras'}", "--enable_batching",
                  f"--batching_parameters_file={root / 'batching.config'}",
                  f"--monitoring_config_file={root / 'monitoring.config'}", "--yellowstone_shim=always",
                  timeout_s=300) as srv:
        yield srv


def _predict(channel, x):
    return predict(channel, "keras", {"x": x}, timeout=60)["output_0"]


def _scrape(server) -> str:
    import requests

    r = requests.get(server.rest + METRICS_PATH, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.text


def _value(page: str, series: str) -> float:
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", page, re.M)
    return float(m.group(1)) if m else 0.0


def test_concurrent_clients_are_batched_into_boosted_calls(server):
    import tensorflow as tf

    assert "keras v1 [serving_default]: served by the shim" in server.log.read_text()
    reference = tf.saved_model.load(str(server.root / "keras" / "1")).signatures["serving_default"]
    rng = np.random.default_rng()
    clients, rounds = 8, 3
    inputs = [[rng.standard_normal((1, 8)).astype(np.float32) for _ in range(rounds)] for _ in range(clients)]
    outputs: list[list] = [[None] * rounds for _ in range(clients)]
    errors: list = []
    start = threading.Barrier(clients)

    def client(i):
        try:
            start.wait(30)
            for r in range(rounds):
                outputs[i][r] = _predict(server.channel, inputs[i][r])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in range(clients):
        for r in range(rounds):
            want = reference(x=tf.constant(inputs[i][r]))["output_0"].numpy()
            np.testing.assert_allclose(outputs[i][r], want, atol=ATOL, rtol=RTOL)

    page = _scrape(server)
    boosted_batches = _value(page, 'yellowstone_tfserving_batches_total{model="keras",runtime="shim",'
                                   'signature="serving_default",tasks="many",version="1"}')
    assert boosted_batches >= 1, page
    runs = _value(page, ":tensorflow:serving:batching_session:processed_batch_size_count{}")
    single = _value(page, ':tensorflow:serving:batching_session:processed_batch_size_bucket{le="2"}')
    assert runs < clients * rounds  # fewer model calls than requests
    assert runs - single >= 1  # some processed batch held more than one row
    assert _value(page, ":tensorflow:serving:batching_session:wrapped_run_count{}") == runs
    ok = ':tensorflow:serving:request_count{model_name="keras",status="OK"}'
    assert _value(page, ok) >= clients * rounds
    assert _value(page, ':tensorflow:serving:request_latency_count{model_name="keras",API="Predict",'
                        'entrypoint="GRPC"}') >= clients * rounds
    assert ':tensorflow:serving:batching_session:queuing_latency_bucket{thread_pool_name="batch_threads"' \
        in page


def test_prometheus_page_counts_rest_and_errors_and_keeps_its_path(server):
    import requests

    x = np.random.default_rng().standard_normal((2, 8)).astype(np.float32)
    url = f"{server.rest}/v1/models/keras:predict"
    r = requests.post(url, json={"instances": x.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    r = requests.post(url, json={"instances": [[1.0] * 5]}, timeout=60)
    assert r.status_code == 400
    page = _scrape(server)
    assert _value(page, ':tensorflow:serving:request_latency_count{model_name="keras",API="Predict",'
                        'entrypoint="REST"}') >= 1
    bad = ':tensorflow:serving:request_count{model_name="keras",status="INVALID_ARGUMENT"}'
    assert _value(page, bad) >= 1
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page
    loads = r'^:tensorflow:cc:saved_model:load_attempt_count\{model_path="[^"]+",status="success"\} 1$'
    assert re.search(loads, page, re.M)
    assert "yellowstone_" in page  # the core's series follow TF Serving's
    assert requests.get(server.rest + "/monitoring/prometheus/metrics", timeout=30).status_code == 404
