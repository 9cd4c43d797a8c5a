"""The drop-in TF Serving server, driven by the official gRPC client and plain HTTP.

One server per module serves two models from a model_config_file: a Keras export (``keras``)
and a TF1 graph with a two-input predict signature plus classify/regress (``tf1``), with shim
policy ``always`` (the fastest valid C path serves, whatever TensorFlow's time: no benchmark
under load decides whether the shim serves). Outputs are compared with TensorFlow's own
signature call on fresh random inputs; errors carry TF Serving's exact texts.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from tfs_server import TFServer, build_model, model_config, predict_request

pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

ATOL, RTOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs")
    build_model("keras", root / "models" / "keras" / "1")
    build_model("tf1", root / "models" / "tf1" / "1")
    config = root / "models.config"
    config.write_text(model_config(("keras", root / "models" / "keras"), ("tf1", root / "models" / "tf1")))
    with TFServer(root, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0.5",
                  "--yellowstone_shim=always") as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(server):
    """TensorFlow's own answer: tf.saved_model.load + signature call."""
    import tensorflow as tf

    loaded = {}

    def run(model: str, feeds: dict, signature: str = "serving_default", version: int = 1) -> dict:
        key = (model, version)
        if key not in loaded:
            loaded[key] = tf.saved_model.load(str(server.root / "models" / model / str(version)))
        out = loaded[key].signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    return run


def test_shim_serves_the_boosted_signatures(server):
    import json
    import re

    log = server.log.read_text()
    # Each C path (OpenVINO, ONNX Runtime) was placed in the core's cache, checked and timed; the
    # fastest serves, and the log names it and the entry it serves from.
    entries = {p.parent for p in (server.root / "cache" / "artifacts").glob("*/*/shim.txt")}
    assert len(entries) == 4, entries  # two models x two C paths
    for model in ("keras", "tf1"):
        m = re.search(rf"{model} v1 \[serving_default\]: served by the shim \((openvino|onnxruntime), C\) "
                      r"from (\S+): fastest valid C path: ", log)
        assert m, log[-3000:]
        backend, entry = m.group(1), Path(m.group(2))
        assert entry in entries
        assert "shim.txt" in json.loads((entry / "MANIFEST.json").read_text())["files"]
        shim = (entry / "shim.txt").read_text()
        assert f"backend {backend}\n" in shim
        assert ("xml " if backend == "openvino" else "onnx ") in shim


def test_grpc_predict_keras_matches_tensorflow(server, reference):
    import tensorflow as tf

    predict, _ = server.stubs()
    rng = np.random.default_rng()
    for batch in (1, 5):
        x = rng.standard_normal((batch, 8)).astype(np.float32)
        resp = predict.Predict(predict_request("keras", {"x": x}), timeout=30)
        got = tf.make_ndarray(resp.outputs["output_0"])
        want = reference("keras", {"x": x})["output_0"]
        assert got.shape == (batch, 3)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
        assert resp.model_spec.name == "keras" and resp.model_spec.version.value == 1
        assert resp.model_spec.signature_name == "serving_default"


def test_grpc_predict_multi_input_and_output_filter(server, reference):
    import tensorflow as tf

    predict, _ = server.stubs()
    rng = np.random.default_rng()
    feeds = {
        "a": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal((3, 4)).astype(np.float32),
    }
    want = reference("tf1", feeds)
    resp = predict.Predict(predict_request("tf1", feeds, version=1), timeout=30)
    assert sorted(resp.outputs) == ["s", "y"]
    for k in ("s", "y"):
        np.testing.assert_allclose(tf.make_ndarray(resp.outputs[k]), want[k], atol=ATOL, rtol=RTOL)
    req = predict_request("tf1", feeds)
    req.output_filter.append("s")
    resp = predict.Predict(req, timeout=30)
    assert list(resp.outputs) == ["s"]


def test_grpc_classify_and_regress_served_by_tensorflow(server, reference):
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    predict, _ = server.stubs()
    rng = np.random.default_rng()
    xs = rng.standard_normal((2, 4)).astype(np.float32)
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))}
            )
        )
        for row in xs
    ]
    serialized = np.array([e.SerializeToString() for e in examples], dtype=object)
    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name, creq.model_spec.signature_name = "tf1", "classify"
    creq.input.example_list.examples.extend(examples)
    cresp = predict.Classify(creq, timeout=30)
    want = reference("tf1", {"inputs": serialized}, signature="classify")
    got = np.array([[c.score for c in row.classes] for row in cresp.result.classifications])
    np.testing.assert_allclose(got, want["scores"], atol=1e-5)
    assert [c.label for c in cresp.result.classifications[0].classes] == ["c0", "c1", "c2"]
    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name, rreq.model_spec.signature_name = "tf1", "regress"
    rreq.input.example_list.examples.extend(examples)
    rresp = predict.Regress(rreq, timeout=30)
    want = reference("tf1", {"inputs": serialized}, signature="regress")["outputs"]
    np.testing.assert_allclose([r.value for r in rresp.result.regressions], want.reshape(-1), atol=1e-4)


def test_grpc_metadata_and_status(server):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    predict, models = server.stubs()
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "tf1"
    req.metadata_field.append("signature_def")
    resp = predict.GetModelMetadata(req, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    assert {"serving_default", "classify", "regress"} <= set(sig_map.signature_def)
    assert sorted(sig_map.signature_def["serving_default"].inputs) == ["a", "b"]
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "keras"
    status = models.GetModelStatus(sreq, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]  # AVAILABLE


def test_grpc_errors_use_tf_serving_codes(server):
    import grpc

    predict, models = server.stubs()
    x = np.random.default_rng().standard_normal((2, 8)).astype(np.float32)
    cases = [
        (predict_request("nope", {"x": x}), grpc.StatusCode.NOT_FOUND, "Servable not found"),
        (predict_request("keras", {"x": x}, version=7), grpc.StatusCode.NOT_FOUND, "Specific(keras, 7)"),
        (predict_request("keras", {"x": x.astype(np.float64)}), grpc.StatusCode.INVALID_ARGUMENT,
         "Expects arg[0] to be float but double is provided"),
        (predict_request("keras", {"x": x[:, :5]}), grpc.StatusCode.INVALID_ARGUMENT,
         "Matrix size-incompatible: In[0]: [2,5]"),
        (predict_request("keras", {"y": x}), grpc.StatusCode.INVALID_ARGUMENT,
         "Signature input alias: x(feed name: serving_default_x:0) not found in request and no default "
         "value provided."),
        (predict_request("keras", {"x": x, "y": x}), grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({x,y}) != len({x}). Sent extra: {y}. "
         "Missing but required: {}."),
        (predict_request("keras", {"x": x}, signature="zzz"), grpc.StatusCode.FAILED_PRECONDITION, "zzz"),
    ]
    for req, code, text in cases:
        with pytest.raises(grpc.RpcError) as info:
            predict.Predict(req, timeout=30)
        assert info.value.code() == code, info.value.details()
        assert text in info.value.details()
    # still serving after the bad requests
    assert (
        predict.Predict(predict_request("keras", {"x": x}), timeout=30)
        .outputs["output_0"]
        .tensor_shape.dim[0]
        .size
        == 2
    )


def test_rest_predict_row_and_columnar(server, reference):
    import requests

    rng = np.random.default_rng()
    x = rng.standard_normal((3, 8)).astype(np.float32)
    want = reference("keras", {"x": x})["output_0"]
    r = requests.post(f"{server.rest}/v1/models/keras:predict", json={"instances": x.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, atol=ATOL, rtol=RTOL)
    r = requests.post(
        f"{server.rest}/v1/models/keras/versions/1:predict", json={"inputs": {"x": x.tolist()}}, timeout=30
    )
    np.testing.assert_allclose(np.array(r.json()["outputs"]), want, atol=ATOL, rtol=RTOL)

    feeds = {
        "a": rng.standard_normal((2, 4)).astype(np.float32),
        "b": rng.standard_normal((2, 4)).astype(np.float32),
    }
    want = reference("tf1", feeds)
    rows = [{"a": feeds["a"][i].tolist(), "b": feeds["b"][i].tolist()} for i in range(2)]
    r = requests.post(f"{server.rest}/v1/models/tf1:predict", json={"instances": rows}, timeout=30)
    preds = r.json()["predictions"]
    np.testing.assert_allclose(np.array([p["y"] for p in preds]), want["y"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(np.array([p["s"] for p in preds]), want["s"], atol=ATOL, rtol=RTOL)
    r = requests.post(
        f"{server.rest}/v1/models/tf1:predict",
        json={"inputs": {k: v.tolist() for k, v in feeds.items()}},
        timeout=30,
    )
    np.testing.assert_allclose(np.array(r.json()["outputs"]["y"]), want["y"], atol=ATOL, rtol=RTOL)


def test_rest_classify_regress_status_metadata(server, reference):
    import requests

    xs = np.random.default_rng().standard_normal((2, 4)).astype(np.float32)
    body = {"signature_name": "regress", "examples": [{"x": row.tolist()} for row in xs]}
    r = requests.post(f"{server.rest}/v1/models/tf1:regress", json=body, timeout=30)
    assert r.status_code == 200, r.text
    import tensorflow as tf

    ser = np.array(
        [
            tf.train.Example(
                features=tf.train.Features(
                    feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))}
                )
            ).SerializeToString()
            for row in xs
        ],
        dtype=object,
    )
    want = reference("tf1", {"inputs": ser}, signature="regress")["outputs"].reshape(-1)
    np.testing.assert_allclose(r.json()["results"], want, atol=1e-4)
    body["signature_name"] = "classify"
    r = requests.post(f"{server.rest}/v1/models/tf1:classify", json=body, timeout=30)
    assert [c[0] for c in r.json()["results"][0]] == ["c0", "c1", "c2"]
    r = requests.get(f"{server.rest}/v1/models/keras", timeout=30)
    assert r.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    r = requests.get(f"{server.rest}/v1/models/tf1/versions/1/metadata", timeout=30)
    sigs = r.json()["metadata"]["signature_def"]["signature_def"]
    assert sorted(sigs["serving_default"]["inputs"]) == ["a", "b"]
    assert r.json()["model_spec"]["version"] == "1"


def test_rest_errors(server):
    import requests

    base = server.rest
    cases = [
        ("POST", "/v1/models/nope:predict", {"instances": [[1.0] * 8]}, 404,
         "Servable not found for request: Latest(nope)"),
        (
            "POST",
            "/v1/models/keras/versions/9:predict",
            {"instances": [[1.0] * 8]},
            404,
            "Specific(keras, 9)",
        ),
        ("POST", "/v1/models/keras:predict", {"instances": [[1.0] * 5]}, 400,
         "Matrix size-incompatible: In[0]: [1,5]"),
        ("POST", "/v1/models/keras:predict", {"instances": [["a"] * 8]}, 400,
         'JSON Value: "a" Type: String is not of expected type: float'),
        ("POST", "/v1/models/keras:predict", {"instances": [[1.0] * 8], "inputs": [[1.0] * 8]}, 400,
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
        ("POST", "/v1/models/keras:predict", {"nothing": 1}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/tf1:predict", {"instances": [[1.0] * 4]}, 400,
         "instances is a plain list, but expecting list of objects as multiple input tensors required "
         "as per tensorinfo_map"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ]
    for method, path, body, status, text in cases:
        r = requests.request(method, base + path, json=body, timeout=30)
        assert r.status_code == status, (path, r.text)
        assert text in r.json()["error"], r.json()
    r = requests.post(f"{base}/v1/models/keras:predict", data=b"{not json", timeout=30)
    assert r.status_code == 400
    assert r.json()["error"] == "JSON Parse error: Missing a name for object member. at offset: 1"
    r = requests.post(f"{base}/v1/models/keras:predict", json={"instances": [[0.5] * 8]}, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"][0]) == 3


def test_new_version_is_picked_up_by_polling(server, reference):
    import requests

    src = server.root / "staging"
    build_model("keras", src)  # new random weights
    shutil.copytree(src, server.root / "models" / "keras" / "2")
    deadline = time.time() + 120
    while time.time() < deadline:
        r = requests.get(f"{server.rest}/v1/models/keras", timeout=30)
        states = {s["version"]: s["state"] for s in r.json()["model_version_status"]}
        if states.get("2") == "AVAILABLE" and states.get("1") == "END":
            break
        time.sleep(0.5)
    assert states == {"2": "AVAILABLE", "1": "END"}, states
    x = np.random.default_rng().standard_normal((2, 8)).astype(np.float32)
    r = requests.post(f"{server.rest}/v1/models/keras:predict", json={"instances": x.tolist()}, timeout=30)
    want = reference("keras", {"x": x}, version=2)["output_0"]
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, atol=ATOL, rtol=RTOL)
    r = requests.post(
        f"{server.rest}/v1/models/keras/versions/1:predict", json={"instances": x.tolist()}, timeout=30
    )
    assert r.status_code == 404
