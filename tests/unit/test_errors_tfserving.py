"""The error table through the TF Serving plugin's real gRPC and REST servers, in process.

A real ``Servable`` (a small SavedModel, the shim off) behind a ``ModelManager`` is served on
free loopback ports; its ``run_tensorflow`` is patched to raise each error of the table, and
the official ``prediction_service_pb2_grpc`` stub and a plain HTTP POST must get the table's
gRPC code and HTTP status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.error_table import ERROR_CASES, ERROR_IDS

pytestmark = [pytest.mark.tensorflow]

tf = pytest.importorskip("tensorflow",
                         reason="tensorflow is not installed (pip install 'yellowstone[tfserving]')")
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")
grpc = pytest.importorskip("grpc")


def _save_model(path):
    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.Generator.from_seed(1).normal((4, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w)}

    m = Model()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from yellowstone.plugins.tfserving import grpc_api, rest
    from yellowstone.plugins.tfserving.manager import ModelConfig, ModelManager
    from yellowstone.plugins.tfserving.servable import Servable

    base = tmp_path_factory.mktemp("tfs-errors") / "m"
    _save_model(base / "1")
    servable = Servable("m", 1, base / "1", shim_policy="off")
    manager = ModelManager([ModelConfig(name="m", base_path=str(base))], lambda *_: servable, poll_s=0)
    manager.poll_once()
    grpc_server, grpc_port = grpc_api.make_server(manager, "127.0.0.1", 0, workers=2)
    rest_server, rest_port = rest.make_server(manager, "127.0.0.1", 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    yield servable, channel, f"http://127.0.0.1:{rest_port}"
    channel.close()
    rest_server.shutdown()
    grpc_server.stop(grace=None)


def _grpc_predict(channel, x):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


def _rest_predict(base, x):
    body = json.dumps({"instances": x.tolist()}).encode()
    req = urllib.request.Request(f"{base}/v1/models/m:predict", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_both_apis_serve_tensorflow_values(served):
    servable, channel, base = served
    x = np.random.default_rng().standard_normal((2, 4)).astype(np.float32)
    want = servable._loaded.signatures["serving_default"](x=tf.constant(x))["y"].numpy()
    got = tf.make_ndarray(_grpc_predict(channel, x).outputs["y"])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    status, body = _rest_predict(base, x)
    assert status == 200
    np.testing.assert_allclose(np.array(body["predictions"]), want, rtol=1e-6)


@pytest.mark.parametrize(("error", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_error_maps_to_the_table_status(served, monkeypatch, error, http, grpc_code):
    servable, channel, base = served
    calls = []

    def run(key, feeds):
        calls.append(key)
        raise error

    monkeypatch.setattr(servable, "run_tensorflow", run)
    x = np.random.default_rng().standard_normal((1, 4)).astype(np.float32)

    with pytest.raises(grpc.RpcError) as info:
        _grpc_predict(channel, x)
    assert info.value.code() == getattr(grpc.StatusCode, grpc_code), info.value.details()
    assert str(error) in info.value.details()

    status, body = _rest_predict(base, x)
    assert status == http, body
    assert str(error) in body["error"]
    assert calls == ["serving_default", "serving_default"]


def test_tf_serving_own_errors_keep_their_table():
    from yellowstone.plugins.tfserving.errors import HTTP_STATUS, ServingError, from_exception

    err = from_exception(ServingError("FAILED_PRECONDITION", 'Serving signature key "z" not found.'))
    assert (err.code, err.http_status) == ("FAILED_PRECONDITION", HTTP_STATUS["FAILED_PRECONDITION"])
    assert from_exception(ServingError("NOT_FOUND", "Servable not found")).http_status == 404
    # Outside both trees: a fault of ours, 500 / INTERNAL as on every other server.
    assert (from_exception(ValueError("bad value")).code,
            from_exception(ValueError("bad value")).http_status) == ("INTERNAL", 500)
