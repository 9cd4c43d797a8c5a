"""Every TF Serving API of the drop-in server, driven by the official gRPC stubs and plain HTTP.

One server (started once for the module) serves three models from a model_config_file: ``tf1``
(a TF1 graph built with placeholders and saved with ``tf.compat.v1.saved_model.Builder``),
``tf2`` (a ``tf.Module`` whose classify/regress signatures carry the predict method) and
``keras`` (a Keras export); the shim serves ``serving_default`` (policy ``always``: the fastest
valid C path, whatever TensorFlow's time). Every answer is compared with
TensorFlow's own session (the SavedModel loaded with ``tf.compat.v1`` and run by tensor names,
as TF Serving's Session::Run runs it) on fresh random inputs. The last part is hostile REST
traffic: slow headers, bad framing, deep or out-of-range JSON, while the server keeps serving.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from tfs_server import TFServer, build_model, importorskip_client, model_config, predict_request

pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.openvino, pytest.mark.onnxruntime]

tf, grpc, requests = importorskip_client()

from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    regression_pb2,
)

ATOL, RTOL = 1e-5, 1e-5  # TensorFlow serves these requests: the same kernels, the same numbers
SHIM_ATOL, SHIM_RTOL = 1e-4, 1e-3
READ_TIMEOUT_S = 3.0
CLASSIFY, REGRESS, PREDICT = (
    "tensorflow/serving/classify",
    "tensorflow/serving/regress",
    "tensorflow/serving/predict",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-api")
    seed = int(np.random.default_rng().integers(1 << 30))
    kinds = ("tf1", "tf2", "keras")
    for kind in kinds:
        build_model(kind, root / "models" / kind / "1", seed, script="tf1_models.py")
    config = root / "models.config"
    config.write_text(model_config(*((k, root / "models" / k) for k in kinds)))
    env = {"YELLOWSTONE_TFSERVING_REST_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    with TFServer(root, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                  "--yellowstone_shim=always", env=env, timeout_s=300) as srv:
        yield srv


class Reference:
    """TensorFlow's own session over a SavedModel: feeds and fetches by tensor name."""

    def __init__(self, path: Path):
        from tensorflow.core.protobuf import config_pb2

        self._config_pb2 = config_pb2
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))

    def run(self, signature: str, feeds: dict, outputs=None) -> dict:
        sig = self.meta_graph.signature_def[signature]
        names = sorted(feeds)
        outs = sorted(outputs or sig.outputs)
        opts = self._config_pb2.CallableOptions(
            feed=[sig.inputs[n].name for n in names], fetch=[sig.outputs[o].name for o in outs]
        )
        fn = self.session._make_callable_from_options(opts)
        return dict(zip(outs, fn(*[np.asarray(feeds[n]) for n in names])))


@pytest.fixture(scope="module")
def reference(server):
    loaded = {}

    def get(model: str) -> Reference:
        if model not in loaded:
            loaded[model] = Reference(server.root / "models" / model / "1")
        return loaded[model]

    return get


@pytest.fixture(scope="module")
def stubs(server):
    return server.stubs()


def _rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=60)
    return info.value


def _example(x, k=None, **extra):
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=list(x)))}
    if k is not None:
        feature["k"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[k]))
    for name, value in extra.items():
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _examples(rng, n):
    xs = rng.standard_normal((n, 4)).astype(np.float32)
    ks = rng.integers(-3, 4, n)
    return xs, ks, [_example(xs[i], int(ks[i])) for i in range(n)]


def _request(cls, model, signature, examples=()):
    """A Classification/RegressionRequest (``cls``) for ``model``/``signature`` over ``examples``."""
    req = cls()
    req.model_spec.name, req.model_spec.signature_name = model, signature
    if examples:
        req.input.example_list.examples.extend(examples)
    return req


def _scores(result):
    """The scores of a ClassificationResult, one row per example."""
    return np.array([[c.score for c in row.classes] for row in result.classifications])


def _post(server, path, body, **kw):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.rest + path, data=data, timeout=60, **kw)


def _serialized(examples):
    return np.array([e.SerializeToString() for e in examples], dtype=object)


# ------------------------------------------------------------------------ Predict: session semantics
@pytest.mark.parametrize("shape", [(3,), (1,), (2, 1), (5, 1), (2, 3)])
def test_tf1_feeds_are_judged_by_the_graph_not_the_signature(server, stubs, reference, shape):
    predict, _ = stubs
    x = np.random.default_rng().standard_normal(shape).astype(np.float32)
    resp = predict.Predict(predict_request("tf1", {"x": x}), timeout=60)
    got = tf.make_ndarray(resp.outputs["y"])
    want = reference("tf1").run("serving_default", {"x": x})["y"]
    assert got.shape == shape
    np.testing.assert_allclose(got, want, atol=SHIM_ATOL, rtol=SHIM_RTOL)
    assert list(resp.outputs["y"].float_val) == got.reshape(-1).tolist()  # typed fields, as TF Serving
    assert resp.model_spec.name == "tf1" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "serving_default"


def test_rest_row_scalars_reach_a_minus_one_by_one_signature(server, reference):
    x = np.random.default_rng().standard_normal(3).astype(np.float32)
    r = _post(server, "/v1/models/tf1:predict", {"instances": x.tolist()})
    assert r.status_code == 200, r.text
    want = reference("tf1").run("serving_default", {"x": x})["y"]
    np.testing.assert_allclose(np.array(r.json()["predictions"], np.float32), want, atol=ATOL, rtol=RTOL)
    r = _post(server, "/v1/models/tf1/versions/1:predict", {"inputs": x[:1].tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"], np.float32), want[:1], atol=ATOL, rtol=RTOL)


def test_the_shim_serves_fitting_feeds_and_tensorflow_the_rest(server, stubs, reference):
    predict, _ = stubs
    log = server.log.read_text()
    assert "tf1 v1 [serving_default]: served by the shim" in log
    x = np.random.default_rng().standard_normal((4,)).astype(np.float32)
    predict.Predict(predict_request("tf1", {"x": x}), timeout=60)
    log = server.log.read_text()
    m = re.search(r"tf1 v1 \[serving_default\]: served by the shim \((\w+), C\)", log)
    assert m, log[-3000:]
    assert f"tf1 v1 [serving_default]: the shim ({m.group(1)}) cannot run this request (input 'x' is " in log
    assert "TensorFlow serves it" in log


def test_keras_export_through_both_apis(server, stubs, reference):
    predict, _ = stubs
    rng = np.random.default_rng()
    for batch in (1, 4):
        x = rng.standard_normal((batch, 8)).astype(np.float32)
        want = reference("keras").run("serving_default", {"x": x})["output_0"]
        got = tf.make_ndarray(
            predict.Predict(predict_request("keras", {"x": x}), timeout=60).outputs["output_0"]
        )
        np.testing.assert_allclose(got, want, atol=SHIM_ATOL, rtol=SHIM_RTOL)
        r = _post(server, "/v1/models/keras:predict", {"instances": x.tolist()})
        np.testing.assert_allclose(np.array(r.json()["predictions"]), want, atol=SHIM_ATOL, rtol=SHIM_RTOL)
    # A feed the graph refuses: TensorFlow's own error, the shape named.
    err = _rpc_error(predict.Predict, predict_request("keras", {"x": x[:, :5]}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Matrix size-incompatible: In[0]: [4,5]" in err.details()


def test_multi_input_signatures_rows_columns_and_filters(server, stubs, reference):
    predict, _ = stubs
    rng = np.random.default_rng()
    feeds = {k: rng.standard_normal((3, 4)).astype(np.float32) for k in ("a", "b")}
    want = reference("tf1").run("two_inputs", feeds)
    resp = predict.Predict(predict_request("tf1", feeds, "two_inputs"), timeout=60)
    assert sorted(resp.outputs) == ["dot", "sum"]
    for k in ("dot", "sum"):
        np.testing.assert_allclose(tf.make_ndarray(resp.outputs[k]), want[k], atol=ATOL, rtol=RTOL)
    resp = predict.Predict(predict_request("tf1", feeds, "two_inputs", output_filter=["dot"]), timeout=60)
    assert list(resp.outputs) == ["dot"]
    rows = [{"a": feeds["a"][i].tolist(), "b": feeds["b"][i].tolist()} for i in range(3)]
    r = _post(server, "/v1/models/tf1:predict", {"signature_name": "two_inputs", "instances": rows})
    preds = r.json()["predictions"]
    np.testing.assert_allclose(np.array([p["sum"] for p in preds]), want["sum"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(np.array([p["dot"] for p in preds]), want["dot"], atol=ATOL, rtol=RTOL)
    body = {"signature_name": "two_inputs", "inputs": {k: v.tolist() for k, v in feeds.items()}}
    out = _post(server, "/v1/models/tf1:predict", body).json()["outputs"]
    np.testing.assert_allclose(np.array(out["dot"]), want["dot"], atol=ATOL, rtol=RTOL)


def test_typed_inputs_over_rest_and_grpc(server, stubs, reference):
    predict, _ = stubs
    rng = np.random.default_rng()
    raw = [rng.bytes(4), "naïve".encode()]
    feeds = {
        "i": rng.integers(-(1 << 40), 1 << 40, 2).astype(np.int64),
        "s": np.array(raw, dtype=object),
        "m": np.array([True, False]),
        "h": rng.integers(0, 256, 2).astype(np.uint8),
    }
    want = reference("tf1").run("typed", feeds)
    resp = predict.Predict(predict_request("tf1", feeds, "typed"), timeout=60)
    for k, v in want.items():
        np.testing.assert_array_equal(tf.make_ndarray(resp.outputs[k]), v)
    rows = [
        {"i": int(feeds["i"][j]), "s": {"b64": base64.b64encode(raw[j]).decode()}, "m": bool(feeds["m"][j]),
         "h": int(feeds["h"][j])}
        for j in range(2)
    ]  # fmt: skip
    r = _post(server, "/v1/models/tf1:predict", {"signature_name": "typed", "instances": rows})
    assert r.status_code == 200, r.text
    for j, p in enumerate(r.json()["predictions"]):
        assert p["i2"] == int(want["i2"][j]) and p["s_len"] == int(want["s_len"][j])
        assert p["m_not"] is bool(want["m_not"][j]) and p["h2"] == int(want["h2"][j])
        assert base64.b64decode(p["label_bytes"]["b64"]) == raw[j]  # a *_bytes output is b64
    bad = dict(rows[0], i=1.5)
    r = _post(server, "/v1/models/tf1:predict", {"signature_name": "typed", "instances": [bad]})
    assert r.status_code == 400 and "JSON Value: 1.5 Type: Number is not of expected type: int64" in r.text


def test_predict_errors_as_tf_serving_words_them(server, stubs):
    predict, _ = stubs
    x = np.random.default_rng().standard_normal((2, 1)).astype(np.float32)
    z = x + 1
    cases = [
        (predict_request("tf1", {"x": x.astype(np.float64)}), "INVALID_ARGUMENT",
         "Expects arg[0] to be float but double is provided"),
        (predict_request("tf1", {"x": x, "z": z}), "INVALID_ARGUMENT",
         "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
         "Missing but required: {}."),
        (predict_request("tf1", {"z": x}), "INVALID_ARGUMENT",
         "Signature input alias: x(feed name: x:0) not found in request and no default value provided."),
        (predict_request("tf1", {"x": x}, output_filter=["q"]), "INVALID_ARGUMENT",
         "output tensor alias not found in signature: q Outputs expected to be in the set {y}."),
        (predict_request("tf1", {"x": x}, output_filter=["y", "y"]), "INVALID_ARGUMENT",
         "duplicate output tensor alias: y"),
        (predict_request("tf1", {"x": x}, "nope"), "FAILED_PRECONDITION",
         'Serving signature key "nope" not found.'),
        (predict_request("tf1", {"x": x}, version=9), "NOT_FOUND",
         "Servable not found for request: Specific(tf1, 9)"),
        (predict_request("nope", {"x": x}), "NOT_FOUND", "Servable not found for request: Latest(nope)"),
    ]  # fmt: skip
    for req, code, text in cases:
        err = _rpc_error(predict.Predict, req)
        assert err.code() == getattr(grpc.StatusCode, code), err.details()
        assert text in err.details(), err.details()
    assert (
        predict.Predict(predict_request("tf1", {"x": x}), timeout=60).outputs["y"].tensor_shape.dim[0].size
        == 2
    )


# ------------------------------------------------------------------------ Classify / Regress
def test_tf1_classify_and_regress_over_grpc(server, stubs, reference):
    predict, _ = stubs
    rng = np.random.default_rng()
    xs, ks, examples = _examples(rng, 3)
    ref = reference("tf1")
    creq = _request(classification_pb2.ClassificationRequest, "tf1", "classify", examples)
    cresp = predict.Classify(creq, timeout=60)
    want = ref.run("classify", {"inputs": _serialized(examples)})
    np.testing.assert_allclose(_scores(cresp.result), want["scores"], atol=ATOL, rtol=RTOL)
    assert [c.label for c in cresp.result.classifications[1].classes] == ["red", "green", "blue"]
    assert (cresp.model_spec.name, cresp.model_spec.signature_name, cresp.model_spec.version.value) == (
        "tf1", "classify", 1
    )  # fmt: skip
    creq.model_spec.signature_name = "classify_scores"
    only = predict.Classify(creq, timeout=60).result.classifications[0].classes
    assert [c.label for c in only] == ["", "", ""]
    np.testing.assert_allclose([c.score for c in only], want["scores"][0], atol=ATOL, rtol=RTOL)

    rreq = _request(regression_pb2.RegressionRequest, "tf1", "regress")
    ctx = _example(rng.standard_normal(4).astype(np.float32), k=2)  # every example has its own x
    rreq.input.example_list_with_context.context.CopyFrom(ctx)
    plain = [_example(xs[i]) for i in range(3)]  # no "k": the context's k applies
    rreq.input.example_list_with_context.examples.extend(plain)
    rresp = predict.Regress(rreq, timeout=60)
    merged = [ctx.SerializeToString() + e.SerializeToString() for e in plain]
    want = ref.run("regress", {"inputs": np.array(merged, dtype=object)})["outputs"].reshape(-1)
    np.testing.assert_allclose([r.value for r in rresp.result.regressions], want, atol=ATOL, rtol=RTOL)
    solo = ref.run("regress", {"inputs": _serialized(plain)})["outputs"].reshape(-1)
    assert not np.allclose(want, solo)  # the context did count


def test_tf2_predict_method_signatures_classify_and_regress(server, stubs, reference):
    predict, _ = stubs
    _, _, examples = _examples(np.random.default_rng(), 2)
    ref = reference("tf2")
    creq = _request(classification_pb2.ClassificationRequest, "tf2", "", examples)  # serving_default:
    cresp = predict.Classify(creq, timeout=60)  # a predict-method signature that fits
    want = ref.run("serving_default", {"inputs": _serialized(examples)})
    np.testing.assert_allclose(_scores(cresp.result), want["scores"], atol=ATOL, rtol=RTOL)
    assert cresp.model_spec.signature_name == "serving_default"
    rreq = _request(regression_pb2.RegressionRequest, "tf2", "regress", examples)
    want = ref.run("regress", {"inputs": _serialized(examples)})["outputs"]
    np.testing.assert_allclose([r.value for r in predict.Regress(rreq, timeout=60).result.regressions], want,
                               atol=ATOL, rtol=RTOL)  # fmt: skip
    # A predict signature whose inputs do not fit is refused as TF Serving refuses it.
    rreq.model_spec.signature_name = "predict"
    err = _rpc_error(predict.Regress, rreq)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("No regression inputs found in SignatureDef")


def test_classify_regress_errors(server, stubs):
    predict, _ = stubs
    _, _, examples = _examples(np.random.default_rng(), 1)
    req = _request(classification_pb2.ClassificationRequest, "tf1", "zzz", examples)
    assert "No signature was found with the name: zzz" in _rpc_error(predict.Classify, req).details()
    req.model_spec.signature_name = "regress"
    assert (
        _rpc_error(predict.Classify, req)
        .details()
        .startswith(
            'Expected classification signature outputs to contain at least one of "classes" or "scores".'
        )
    )
    req.model_spec.signature_name = "two_inputs"
    assert _rpc_error(predict.Classify, req).details() == "Expected one input Tensor."
    empty = _request(classification_pb2.ClassificationRequest, "tf1", "classify")
    err = _rpc_error(predict.Classify, empty)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "Input is empty."


def test_rest_classify_and_regress_with_json_examples(server, reference):
    rng = np.random.default_rng()
    xs = rng.standard_normal((2, 4)).astype(np.float32)
    tag = rng.bytes(3)
    body = {
        "signature_name": "classify",
        "context": {"k": 1, "tag": {"b64": base64.b64encode(tag).decode()}},
        "examples": [{"x": xs[0].tolist()}, {"x": xs[1].tolist(), "k": [2]}],
    }
    r = _post(server, "/v1/models/tf1:classify", body)
    assert r.status_code == 200, r.text
    ctx = tf.train.Example()
    ctx.features.feature["k"].int64_list.value.append(1)
    ctx.features.feature["tag"].bytes_list.value.append(tag)
    merged = [ctx.SerializeToString() + _example(xs[0]).SerializeToString(),
              ctx.SerializeToString() + _example(xs[1], 2).SerializeToString()]  # fmt: skip
    want = reference("tf1").run("classify", {"inputs": np.array(merged, dtype=object)})
    results = r.json()["results"]
    assert [[c[0] for c in row] for row in results] == [["red", "green", "blue"]] * 2
    np.testing.assert_allclose([[c[1] for c in row] for row in results], want["scores"], atol=ATOL, rtol=RTOL)

    body = {"examples": [{"x": xs[0].tolist(), "k": 3}]}  # tf2's serving_default
    r = _post(server, "/v1/models/tf2:classify", body)
    want = reference("tf2").run("serving_default", {"inputs": _serialized([_example(xs[0], 3)])})["scores"]
    np.testing.assert_allclose([c[1] for c in r.json()["results"][0]], want[0], atol=ATOL, rtol=RTOL)
    body = {"signature_name": "regress", "examples": [{"x": xs[1].tolist(), "k": True}]}  # bool -> int64
    r = _post(server, "/v1/models/tf2:regress", body)
    want = reference("tf2").run("regress", {"inputs": _serialized([_example(xs[1], 1)])})["outputs"]
    np.testing.assert_allclose(r.json()["results"], want, atol=ATOL, rtol=RTOL)
    r = _post(server, "/v1/models/tf1:regress", {"signature_name": "regress", "examples": [{"x": [1, 2.5]}]})
    assert r.status_code == 400 and "Unexpected element type in feature: x expecting type: int64" in r.text
    r = _post(server, "/v1/models/tf1:regress", {"signature_name": "regress", "examples": []})
    assert r.status_code == 400 and "'examples' value is an empty array" in r.text


# ------------------------------------------------------------------------ MultiInference
def test_multi_inference_runs_every_task_once(server, stubs, reference):
    predict, _ = stubs
    _, _, examples = _examples(np.random.default_rng(), 3)
    req = inference_pb2.MultiInferenceRequest()
    for sig, method in (("classify", CLASSIFY), ("regress", REGRESS), ("regress_plus", REGRESS)):
        task = req.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = "tf1", sig, method
    req.input.example_list.examples.extend(examples)
    resp = predict.MultiInference(req, timeout=60)
    ref = reference("tf1")
    ser = {"inputs": _serialized(examples)}
    assert [r.model_spec.signature_name for r in resp.results] == ["classify", "regress", "regress_plus"]
    assert all(r.model_spec.name == "tf1" and r.model_spec.version.value == 1 for r in resp.results)
    scores = _scores(resp.results[0].classification_result)
    np.testing.assert_allclose(scores, ref.run("classify", ser)["scores"], atol=ATOL, rtol=RTOL)
    for i, sig in ((1, "regress"), (2, "regress_plus")):
        got = [r.value for r in resp.results[i].regression_result.regressions]
        np.testing.assert_allclose(got, ref.run(sig, ser)["outputs"].reshape(-1), atol=ATOL, rtol=RTOL)


def test_multi_inference_errors(server, stubs):
    predict, _ = stubs
    _, _, examples = _examples(np.random.default_rng(), 1)

    def request(*tasks):
        req = inference_pb2.MultiInferenceRequest()
        for model, sig, method in tasks:
            t = req.tasks.add()
            t.model_spec.name, t.model_spec.signature_name, t.method_name = model, sig, method
        req.input.example_list.examples.extend(examples)
        return req

    cases = [
        (request(("tf1", "regress", REGRESS), ("tf1", "regress", REGRESS)), "INVALID_ARGUMENT",
         "Duplicate evaluation of signature: regress"),
        (request(("tf1", "serving_default", PREDICT)), "UNIMPLEMENTED", "Unsupported signature method_name"),
        (request(("tf1", "regress", REGRESS), ("tf2", "regress", REGRESS)), "INVALID_ARGUMENT",
         "must access the same model name"),
        (request(("tf1", "nope", REGRESS)), "INVALID_ARGUMENT",
         "Requested signature not found in model graph"),
        (request(("nope", "regress", REGRESS)), "NOT_FOUND", "Servable not found"),
    ]  # fmt: skip
    for req, code, text in cases:
        err = _rpc_error(predict.MultiInference, req)
        assert err.code() == getattr(grpc.StatusCode, code) and text in err.details(), err.details()


# ------------------------------------------------------------------------ metadata and status
def test_metadata_over_grpc_and_rest_in_tf_servings_form(server, stubs, reference):
    from google.protobuf import json_format

    predict, _ = stubs
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "tf1"
    req.metadata_field.append("signature_def")
    resp = predict.GetModelMetadata(req, timeout=60)
    assert resp.model_spec.name == "tf1" and resp.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    meta = reference("tf1").meta_graph
    assert dict(sig_map.signature_def) == dict(meta.signature_def)

    r = requests.get(f"{server.rest}/v1/models/tf1/versions/1/metadata", timeout=60)
    body = r.json()
    assert body["model_spec"] == {"name": "tf1", "signature_name": "", "version": "1"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    dim = [{"size": "-1", "name": ""}, {"size": "1", "name": ""}]
    assert sigs["serving_default"] == {
        "inputs": {
            "x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": dim, "unknown_rank": False}, "name": "x:0"}
        },
        "outputs": {
            "y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": dim, "unknown_rank": False}, "name": "y:0"}
        },
        "method_name": PREDICT,
        "defaults": {},
    }
    want = json_format.MessageToDict(
        meta.signature_def["classify"],
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    assert sigs["classify"] == want and set(sigs) == set(meta.signature_def)
    tf2 = requests.get(f"{server.rest}/v1/models/tf2/metadata", timeout=60).json()
    assert tf2["metadata"]["signature_def"]["signature_def"]["regress"]["method_name"] == PREDICT

    bad = get_model_metadata_pb2.GetModelMetadataRequest()
    bad.model_spec.name = "tf1"
    err = _rpc_error(predict.GetModelMetadata, bad)
    assert err.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    bad.metadata_field.append("graph")
    assert "Metadata field graph is not supported" in _rpc_error(predict.GetModelMetadata, bad).details()
    assert _rpc_error(
        predict.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest()
    ).details() == ("Missing ModelSpec")


def test_model_status_over_grpc_and_rest(server, stubs):
    _, models = stubs
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "tf1"
    resp = models.GetModelStatus(req, timeout=60)
    assert [(s.version, s.state, s.status.error_code) for s in resp.model_version_status] == [(1, 30, 0)]
    req.model_spec.version.value = 7
    err = _rpc_error(models.GetModelStatus, req)
    assert (
        err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "Could not find version 7 of model tf1"
    )
    other = get_model_status_pb2.GetModelStatusRequest()
    other.model_spec.name = "nope"
    assert _rpc_error(models.GetModelStatus, other).details() == "Could not find any versions of model nope"

    base = server.rest
    assert requests.get(f"{base}/v1/models/tf2", timeout=60).json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    r = requests.get(f"{base}/v1/models/tf2/versions/7", timeout=60)
    assert r.status_code == 404 and r.json() == {"error": "Could not find version 7 of model tf2"}
    for path, status, text in [
        ("/v1/models", 400, "Missing model name in request."),
        ("/v1/foo", 400, "Malformed request: GET /v1/foo"),
        ("/v1/models/tf1:predict", 400, "Malformed request: GET /v1/models/tf1:predict"),
    ]:
        r = requests.get(base + path, timeout=60)
        assert (r.status_code, r.json()["error"]) == (status, text)
    assert requests.get(f"{base}/elsewhere", timeout=60).status_code == 404


def test_every_manager_state_maps_to_tf_servings_enum():
    from yellowstone.plugins.tfserving.grpc_api import model_status_response
    from yellowstone.plugins.tfserving.rest import RestApi

    states = ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]

    class Manager:
        configs: dict = {}

        def status(self, name, version=None):
            return [(5 - i, s, "NotFoundError: gone" if s == "END" else "") for i, s in enumerate(states)]

    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "m"
    resp = model_status_response(Manager(), req)
    assert [s.state for s in resp.model_version_status] == [10, 20, 30, 40, 50]
    status, body = RestApi(Manager()).handle("GET", "/v1/models/m", b"")
    assert status == 200
    assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [
        (str(5 - i), s) for i, s in enumerate(states)
    ]
    assert body["model_version_status"][-1]["status"] == {
        "error_code": "UNKNOWN",
        "error_message": "NotFoundError: gone",
    }


# ------------------------------------------------------------------------ hostile REST traffic
def _raw(server, data: bytes, timeout: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _good_request(server, reference):
    x = np.random.default_rng().standard_normal((2, 1)).astype(np.float32)
    r = _post(server, "/v1/models/tf1:predict", {"instances": x.tolist()})
    assert r.status_code == 200, r.text
    want = reference("tf1").run("serving_default", {"x": x})["y"]
    np.testing.assert_allclose(
        np.array(r.json()["predictions"], np.float32), want, atol=SHIM_ATOL, rtol=SHIM_RTOL
    )


def test_slow_headers_hold_sockets_not_threads_and_are_closed(server, reference):
    pid = server.proc.pid
    _good_request(server, reference)
    before = _threads(pid)
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
        s.sendall(b"POST /v1/models/tf1:predict HTT")
        socks.append(s)
    try:
        _good_request(server, reference)  # answered while 50 requests stall
        assert _threads(pid) < before + 10
        for s in socks:  # after the read timeout the server closes each idle socket
            s.settimeout(READ_TIMEOUT_S + 30)
            try:
                assert s.recv(1024) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in socks:
            s.close()
    _good_request(server, reference)


def test_slow_body_is_cut_off(server, reference):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=READ_TIMEOUT_S + 30) as s:
        s.sendall(b"POST /v1/models/tf1:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
    _good_request(server, reference)


@pytest.mark.parametrize(
    ("length", "status", "text"),
    [
        (b"-1", 400, b"Invalid Content-Length: -1"),
        (b"abc", 400, b"Invalid Content-Length"),
        (b"1000000000000", 413, b"larger than the limit"),
    ],
)
def test_bad_content_length_is_refused_at_once(server, reference, length, status, text):
    head = b"POST /v1/models/tf1:predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    reply = _raw(server, head + b'{"instances": [1.0]}', timeout=READ_TIMEOUT_S)  # no waiting for a body
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert text in reply
    _good_request(server, reference)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"instances": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "JSON Parse error"),
        (b'{"instances": [1e400]}', "JSON Parse error: Number too big to be stored in double."),
        (b'{"instances": [[true], [1.0]]}', "JSON Value: true Type: True is not of expected type: float"),
        (b'{"instances": [[1.0], [false]]}', "JSON Value: false Type: False is not of expected type: float"),
        (b'{"inputs": [true, 2.0]}', "is not of expected type: float"),
        (
            b'{"instances": [[16777217]]}',
            "Cannot convert JSON value: 16777217 to float without loss of precision.",
        ),
        (b"", "JSON Parse error: The document is empty"),
    ],
)
def test_bad_json_answers_400_and_the_server_keeps_serving(server, reference, body, text):
    r = _post(server, "/v1/models/tf1:predict", body)
    assert r.status_code == 400, r.text
    assert text in r.json()["error"]
    _good_request(server, reference)


def test_http_framing_variants_are_served(server, reference):
    x = np.random.default_rng().standard_normal((2, 1)).astype(np.float32)
    want = reference("tf1").run("serving_default", {"x": x})["y"]
    payload = json.dumps({"instances": x.tolist()}).encode()

    def check(response):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.array(response.json()["predictions"], np.float32), want,
                                   atol=SHIM_ATOL, rtol=SHIM_RTOL)  # fmt: skip

    url = f"{server.rest}/v1/models/tf1:predict"
    check(requests.post(url, data=iter([payload[:7], payload[7:]]), timeout=60))  # chunked
    check(requests.post(url, data=gzip.compress(payload), headers={"Content-Encoding": "gzip"}, timeout=60))
    with requests.Session() as s:  # keep-alive: several requests on one connection
        for _ in range(3):
            check(s.post(url, data=payload, timeout=60))
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/tf1:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload))  # fmt: skip
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(payload)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK")
    got = np.array(json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"], np.float32)
    np.testing.assert_allclose(got, want, atol=SHIM_ATOL, rtol=SHIM_RTOL)
