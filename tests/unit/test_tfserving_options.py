"""The API options the flags switch on, on in-process servers over a real servable (the shim off).

``--enable_serialization_as_tensor_content``: ``PredictionService(tensor_content=True)`` answers in
``tensor_content``; ``--rest_api_enable_cors_support``: ``rest.make_server(headers=CORS_HEADERS)``
adds the headers to every response and answers OPTIONS; ``grpc_api.make_server`` also listens on
a Unix socket and serves extra generic handlers.
"""

from __future__ import annotations

import http.client
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorflow]

tf = pytest.importorskip(
    "tensorflow", reason="tensorflow is not installed (pip install 'yellowstone[tfserving]')"
)
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")
grpc = pytest.importorskip("grpc")


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    from yellowstone.plugins.tfserving.manager import ModelConfig, ModelManager
    from yellowstone.plugins.tfserving.servable import Servable

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.Generator.from_seed(5).normal((4, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w), "n": tf.reduce_sum(tf.cast(x > 0, tf.int64), axis=1)}

    base = tmp_path_factory.mktemp("tfs-options") / "m"
    m = Model()
    tf.saved_model.save(m, str(base / "1"), signatures={"serving_default": m.serve})
    servable = Servable("m", 1, base / "1", shim_policy="off")
    mgr = ModelManager([ModelConfig(name="m", base_path=str(base))], lambda *_: servable, poll_s=0)
    mgr.poll_once()
    yield mgr
    servable.close()


def _predict(stub, x):
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return stub.Predict(req, timeout=30)


@pytest.mark.parametrize("content", [False, True])
def test_tensor_content_serialization(manager, tmp_path, content):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from yellowstone.plugins.tfserving import grpc_api

    sock = tmp_path / "grpc.sock"
    calls = []
    ping = grpc.unary_unary_rpc_method_handler(lambda req, ctx: calls.append(req) or b"pong")
    probe = grpc.method_handlers_generic_handler("test.Probe", {"Ping": ping})
    server, port = grpc_api.make_server(manager, "127.0.0.1", 0, 2, extra_addresses=(f"unix:{sock}",),
                                        generic_handlers=(probe,), tensor_content=content)
    try:
        x = np.random.default_rng().standard_normal((3, 4)).astype(np.float32)
        want = manager.get("m").run_tensorflow("serving_default", {"x": x})
        for target in (f"127.0.0.1:{port}", f"unix:{sock}"):
            with grpc.insecure_channel(target) as channel:
                resp = _predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), x)
                y, n = resp.outputs["y"], resp.outputs["n"]
                assert bool(y.tensor_content) is content and bool(y.float_val) is not content
                assert bool(n.tensor_content) is content and bool(n.int64_val) is not content
                np.testing.assert_array_equal(tf.make_ndarray(y), want["y"])
                np.testing.assert_array_equal(tf.make_ndarray(n), (x > 0).sum(axis=1))
                assert channel.unary_unary("/test.Probe/Ping")(b"ping", timeout=30) == b"pong"
        assert calls == [b"ping", b"ping"]
    finally:
        server.stop(grace=None)


def _http(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_cors_headers_on_every_response_and_options_answered(manager):
    from yellowstone.plugins.tfserving import rest

    server, port = rest.make_server(manager, "127.0.0.1", 0, num_threads=2, headers=rest.CORS_HEADERS)
    plain, plain_port = rest.make_server(manager, "127.0.0.1", 0, num_threads=2)
    try:
        x = np.random.default_rng().standard_normal((2, 4)).astype(np.float32)
        body = json.dumps({"instances": x.tolist()}).encode()
        cases = [("POST", "/v1/models/m:predict", body, 200), ("GET", "/v1/models/m", None, 200),
                 ("POST", "/v1/models/nope:predict", body, 404), ("GET", "/elsewhere", None, 404),
                 ("OPTIONS", "/v1/models/m:predict", None, 200)]
        for method, path, data, status in cases:
            got, headers, payload = _http(port, method, path, data)
            assert got == status, payload
            for k, v in rest.CORS_HEADERS.items():
                assert headers[k.lower()] == v, (method, path, headers)
            if method == "OPTIONS":
                assert payload == b""
        got, headers, payload = _http(port, "POST", "/v1/models/m:predict", body)
        want = manager.get("m").run_tensorflow("serving_default", {"x": x})["y"]
        rows = json.loads(payload)["predictions"]
        np.testing.assert_allclose(np.array([r["y"] for r in rows]), want, rtol=1e-6)
        # Without the headers: none added, and OPTIONS is a malformed request as in TF Serving.
        got, headers, payload = _http(plain_port, "OPTIONS", "/v1/models/m:predict")
        assert got == 400 and "access-control-allow-origin" not in headers
        assert json.loads(payload)["error"] == "Malformed request: OPTIONS /v1/models/m:predict"
    finally:
        server.shutdown()
        plain.shutdown()
