"""Model flags on a live server: version directories, ``--enable_model_warmup``, ``--rest_api_timeout_in_ms``
and ``--model_config_file_poll_wait_seconds`` (models added and removed while serving).

Model ``a`` (version directory ``00000123``) counts its serving_default calls in a variable
(signature ``count``), ships two warmup records, and has a ``slow`` signature whose run time
grows with its input. Model ``b`` (version ``1700000000``) is added by rewriting the config file,
which drops ``a``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from tfs_server import TFServer, model_config, predict, run_python

pytestmark = [pytest.mark.server, pytest.mark.tensorflow]

MODEL = r'''
import sys
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

class M(tf.Module):
    def __init__(self):
        super().__init__()
        self.calls = tf.Variable(0, dtype=tf.int64)
        self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[1, 2]))
        self.a = tf.Variable(tf.random.stateless_normal([256, 256], seed=[3, 4]) * 0.05)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        self.calls.assign_add(1)
        return {"y": tf.matmul(x, self.w)}

    @tf.function(input_signature=[])
    def count(self):
        return {"calls": tf.reshape(self.calls.read_value(), [1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="n")])
    def slow(self, n):
        def body(i, acc):
            return i + 1, tf.tanh(tf.matmul(acc, self.a))
        _, acc = tf.while_loop(lambda i, acc: i < n[0], body, [tf.constant(0), self.a])
        return {"y": tf.reduce_sum(acc) + tf.zeros_like(tf.cast(n, tf.float32))}

path, warm = sys.argv[1], int(sys.argv[2])
m = M()
tf.saved_model.save(m, path, signatures={"serving_default": m.serve, "count": m.count, "slow": m.slow})
if warm:
    tf.io.gfile.makedirs(path + "/assets.extra")
    with tf.io.TFRecordWriter(path + "/assets.extra/tf_serving_warmup_requests") as w:
        for i in range(warm):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "a"
            req.model_spec.signature_name = "serving_default"
            req.inputs["x"].CopyFrom(tf.make_tensor_proto(tf.fill([1, 4], float(i))))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log.SerializeToString())
'''

WARMUP_RECORDS, ITERATIONS = 2, 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-models")
    for name, version, warm in (("a", "00000123", WARMUP_RECORDS), ("b", "1700000000", 0)):
        run_python("-c", MODEL, str(root / name / version), str(warm))
    (root / "models.config").write_text(model_config(("a", root / "a")))
    with TFServer(root, f"--model_config_file={root / 'models.config'}",
                  "--model_config_file_poll_wait_seconds=0.5", "--file_system_poll_wait_seconds=0.5",
                  "--rest_api_timeout_in_ms=300", f"--num_request_iterations_for_warmup={ITERATIONS}",
                  "--yellowstone_shim=off", unset=()) as srv:
        yield srv


def _predict(server, model, signature, feeds, version=None):
    return predict(server.channel, model, feeds, signature, version)


def _states(server, model):
    import requests

    r = requests.get(f"{server.rest}/v1/models/{model}", timeout=30)
    if r.status_code != 200:
        return {}
    return {s["version"]: s["state"] for s in r.json()["model_version_status"]}


def test_warmup_requests_are_replayed_before_the_version_is_available(server):
    # No client has called serving_default yet: every call counted came from the warmup file.
    calls = _predict(server, "a", "count", {})["calls"]
    assert calls.tolist() == [WARMUP_RECORDS * ITERATIONS]
    log = server.log.read_text()
    assert "Number of warmup records read: 2" in log
    loaded = log.index("Successfully loaded servable version {name: a")
    assert log.index("Finished reading warmup data") < loaded


def test_zero_padded_version_directory_is_served_as_its_number(server):
    assert _states(server, "a") == {"123": "AVAILABLE"}
    x = np.random.default_rng().standard_normal((2, 4)).astype(np.float32)
    import tensorflow as tf

    want = tf.saved_model.load(str(server.root / "a" / "00000123")).signatures["serving_default"]
    got = _predict(server, "a", "serving_default", {"x": x}, version=123)["y"]
    np.testing.assert_allclose(got, want(x=tf.constant(x))["y"].numpy(), atol=1e-5, rtol=1e-4)


def test_rest_inference_past_the_timeout_gets_the_deadline_error(server):
    import requests

    _predict(server, "a", "slow", {"n": np.array([1], np.int32)})  # gRPC has no such deadline
    url = f"{server.rest}/v1/models/a:predict"
    r = requests.post(url, json={"signature_name": "slow", "inputs": {"n": [1]}}, timeout=60)
    assert r.status_code == 200, r.text
    start = time.monotonic()
    r = requests.post(url, json={"signature_name": "slow", "inputs": {"n": [20000]}}, timeout=60)
    assert (r.status_code, r.json()) == (504, {"error": "Timed out waiting for notification"})
    assert time.monotonic() - start < 10


def test_config_reload_adds_and_removes_models(server):
    config = server.root / "models.config"
    config.write_text(model_config(("b", server.root / "b")))
    deadline = time.time() + 120
    while time.time() < deadline:
        if _states(server, "b").get("1700000000") == "AVAILABLE" and _states(server, "a") == {"123": "END"}:
            break
        time.sleep(0.5)
    assert _states(server, "b") == {"1700000000": "AVAILABLE"}
    assert _states(server, "a") == {"123": "END"}
    y = _predict(server, "b", "serving_default", {"x": np.ones((1, 4), np.float32)})["y"]
    assert y.shape == (1, 3)
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        _predict(server, "a", "serving_default", {"x": np.ones((1, 4), np.float32)})
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    config.write_text("model_config_list { config { name: 'b' ")  # unreadable: keep serving
    time.sleep(1.5)
    assert _states(server, "b") == {"1700000000": "AVAILABLE"}
    assert "Failed to read ModelServerConfig file" in server.log.read_text()
