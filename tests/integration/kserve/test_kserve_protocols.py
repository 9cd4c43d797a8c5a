"""One boosted ONNX model (FP32 + INT64 in, FP32 + INT64 out) behind KServe's ModelServer:
V1 and V2 over REST, V2 over gRPC, metadata, readiness, concurrency and the failure modes,
all through KServe's own clients against the real server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from ksserver import FAST, start_server, stop_server

pytestmark = [pytest.mark.server, pytest.mark.onnxruntime, pytest.mark.timeout(600)]

NAME = "twohead"
ATOL = 1e-4


@pytest.fixture(scope="module")
def two_head(tmp_path_factory):
    import ksmodels

    d = tmp_path_factory.mktemp("kserve-twohead")
    ksmodels.write_two_head_onnx(d / "models")
    return d


@pytest.fixture(scope="module")
def server(two_head):
    srv = start_server(NAME, two_head / "models", two_head, *FAST)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def reference():
    """The framework the model came from (torch), on numpy inputs."""
    import ksmodels
    import torch

    model = ksmodels._two_head()

    def ref(x: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            scores, label = model(torch.from_numpy(x), torch.from_numpy(ids))
        return scores.numpy(), label.numpy()

    return ref


def _inputs(batch: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    import ksmodels

    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 16)).astype(np.float32),
            rng.integers(1, ksmodels.VOCAB, (batch, 4)).astype(np.int64))


def _v2_request(x, ids, *, binary: bool = True, datatypes=("FP32", "INT64")):
    from kserve import InferInput, InferRequest

    ix = InferInput("x", list(x.shape), datatypes[0])
    ix.set_data_from_numpy(x, binary_data=binary)
    ii = InferInput("ids", list(ids.shape), datatypes[1])
    ii.set_data_from_numpy(ids, binary_data=binary)
    return InferRequest(model_name=NAME, infer_inputs=[ix, ii])


def _rest(protocol: str):
    from kserve import InferenceRESTClient, RESTConfig

    return InferenceRESTClient(RESTConfig(protocol=protocol, timeout=60, retries=0))


def _grpc(server):
    from kserve import InferenceGRPCClient

    return InferenceGRPCClient(server.grpc_url, timeout=60, retries=0)


def _check_v2(resp, x, ids, reference):
    want_scores, want_label = reference(x, ids)
    scores, label = resp.get_output_by_name("scores"), resp.get_output_by_name("label")
    assert [o.name for o in resp.outputs] == ["scores", "label"]
    assert (scores.datatype, list(scores.shape)) == ("FP32", [len(x), 5])
    assert (label.datatype, list(label.shape)) == ("INT64", [len(x)])
    got = scores.as_numpy()
    assert got.dtype == np.float32 and label.as_numpy().dtype == np.int64
    np.testing.assert_allclose(got, want_scores, atol=ATOL, rtol=1e-4)
    np.testing.assert_array_equal(label.as_numpy(), want_label)


# -- readiness and metadata -------------------------------------------------------------------
def test_ready_and_metadata(server):
    import requests

    async def go():
        v1, v2, g = _rest("v1"), _rest("v2"), _grpc(server)
        try:
            return (await v1.is_model_ready(server.base_url, NAME),
                    await v2.is_model_ready(server.base_url, NAME),
                    await v2.is_server_ready(server.base_url),
                    await g.is_model_ready(NAME), await g.is_server_ready())
        finally:
            await v1.close(), await v2.close(), await g.close()

    assert asyncio.run(go()) == (True, True, True, True, True)
    meta = requests.get(f"{server.base_url}/v2/models/{NAME}", timeout=10).json()
    assert meta["name"] == NAME
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]},
                              {"name": "ids", "datatype": "INT64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 5]},
                               {"name": "label", "datatype": "INT64", "shape": [-1]}]


def test_grpc_metadata(server):
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest

    async def go():
        g = _grpc(server)
        try:
            return await g._client_stub.ModelMetadata(ModelMetadataRequest(name=NAME))
        finally:
            await g.close()

    meta = asyncio.run(go())
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("x", "FP32", [-1, 16]), ("ids", "INT64", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("scores", "FP32", [-1, 5]), ("label", "INT64", [-1])]


# -- values through each protocol ---------------------------------------------------------------
def test_v1_rest(server, reference):
    x, ids = _inputs(3)
    headers: dict[str, str] = {}

    async def go():
        c = _rest("v1")
        try:
            body = {"instances": [{"x": xr.tolist(), "ids": ir.tolist()} for xr, ir in zip(x, ids)]}
            return await c.infer(server.base_url, body, model_name=NAME, response_headers=headers)
        finally:
            await c.close()

    out = asyncio.run(go())
    want_scores, want_label = reference(x, ids)
    preds = out["predictions"]
    assert len(preds) == 3 and set(preds[0]) == {"scores", "label"}
    np.testing.assert_allclose([p["scores"] for p in preds], want_scores, atol=ATOL, rtol=1e-4)
    assert [p["label"] for p in preds] == want_label.tolist()
    assert headers["x-yellowstone-backend"] in ("native", "onnxruntime", "openvino")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_rest(server, reference, binary):
    x, ids = _inputs(4)

    async def go():
        c = _rest("v2")
        try:
            return await c.infer(server.base_url, _v2_request(x, ids, binary=binary),
                                 model_name=NAME)
        finally:
            await c.close()

    resp = asyncio.run(go())
    _check_v2(resp, x, ids, reference)
    assert resp.parameters["yellowstone_backend"] in ("native", "onnxruntime", "openvino")


@pytest.mark.parametrize("binary", [True, False], ids=["raw", "contents"])
def test_v2_grpc(server, reference, binary):
    x, ids = _inputs(2)

    async def go():
        g = _grpc(server)
        try:
            return await g.infer(_v2_request(x, ids, binary=binary))
        finally:
            await g.close()

    _check_v2(asyncio.run(go()), x, ids, reference)


def test_concurrent_requests_all_protocols(server, reference):
    """24 requests in flight at once over REST V1, REST V2 and gRPC; each gets its own answer."""
    cases = [_inputs(1 + i % 3) for i in range(24)]

    async def one(i, v1, v2, g):
        x, ids = cases[i]
        if i % 3 == 0:
            body = {"instances": [{"x": xr.tolist(), "ids": ir.tolist()} for xr, ir in zip(x, ids)]}
            out = await v1.infer(server.base_url, body, model_name=NAME)
            return (np.array([p["scores"] for p in out["predictions"]], np.float32),
                    np.array([p["label"] for p in out["predictions"]]))
        resp = await (v2.infer(server.base_url, _v2_request(x, ids), model_name=NAME)
                      if i % 3 == 1 else g.infer(_v2_request(x, ids)))
        return (resp.get_output_by_name("scores").as_numpy(),
                resp.get_output_by_name("label").as_numpy())

    async def go():
        v1, v2, g = _rest("v1"), _rest("v2"), _grpc(server)
        try:
            return await asyncio.gather(*(one(i, v1, v2, g) for i in range(len(cases))))
        finally:
            await v1.close(), await v2.close(), await g.close()

    for (x, ids), (scores, label) in zip(cases, asyncio.run(go())):
        want_scores, want_label = reference(x, ids)
        np.testing.assert_allclose(scores, want_scores, atol=ATOL, rtol=1e-4)
        np.testing.assert_array_equal(label, want_label)


# -- failure modes: KServe's error answers, and the server keeps serving --------------------------
def _status_of(coro) -> int:
    import httpx

    async def go():
        try:
            await coro
        except httpx.HTTPStatusError as exc:
            return exc.response.status_code
        return 200

    return asyncio.run(go())


def _rest_call(server, protocol, data, model=NAME, headers=None):
    async def go():
        c = _rest(protocol)
        try:
            return await c.infer(server.base_url, data, model_name=model, headers=headers)
        finally:
            await c.close()

    return go()


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_malformed_json_is_400(server, protocol):
    """KServe answers V1 with InvalidInput (400); V2's body validation is 400 too (not 422)."""
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [1.0, 2'
    assert _status_of(_rest_call(server, protocol, body, headers=dict(JSON))) == 400


@pytest.mark.parametrize("shape", [[-1, 16], [1.5, 16]])
def test_v2_bad_shape_dimension_is_400(server, shape):
    """-1 is metadata's "any size", never a request's; a fraction is no dimension."""
    import requests

    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": [0.5] * 16},
                       {"name": "ids", "datatype": "INT64", "shape": [1, 4], "data": [1] * 4}]}
    resp = requests.post(f"{server.base_url}/v2/models/{NAME}/infer", json=body, timeout=60)
    assert resp.status_code == 400, resp.text
    assert "shape" in resp.json()["error"]


BINARY = "inference-header-content-length"


def _binary_body(x, ids, *, x_shape=None, **extra) -> tuple[bytes, dict[str, str]]:
    """A V2 body with the binary tensor extension, written by hand (little-endian, row-major)."""
    import json

    raw_x, raw_ids = x.astype("<f4").tobytes(), ids.astype("<i8").tobytes()
    header = json.dumps({"id": "bin-1", "inputs": [
        {"name": "x", "shape": x_shape or list(x.shape), "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw_x)}},
        {"name": "ids", "shape": list(ids.shape), "datatype": "INT64",
         "parameters": {"binary_data_size": len(raw_ids)}}], **extra}).encode()
    return header + raw_x + raw_ids, {BINARY: str(len(header)),
                                      "Content-Type": "application/octet-stream"}


def test_v2_binary_request_equals_json_request(server, reference):
    """The predictor decodes binary tensors itself (NumPy): the same answer as the JSON path."""
    import requests

    x, ids = _inputs(3)
    url = f"{server.base_url}/v2/models/{NAME}/infer"
    body, headers = _binary_body(x, ids)
    binary = requests.post(url, data=body, headers=headers, timeout=60)
    as_json = requests.post(url, timeout=60, json={"id": "bin-1", "inputs": [
        {"name": "x", "shape": [3, 16], "datatype": "FP32", "data": x.ravel().tolist()},
        {"name": "ids", "shape": [3, 4], "datatype": "INT64", "data": ids.ravel().tolist()}]})
    assert binary.status_code == as_json.status_code == 200, (binary.text, as_json.text)
    assert BINARY not in binary.headers  # no binary output asked for: KServe's JSON answer
    assert binary.json() == as_json.json()
    out = {o["name"]: o for o in binary.json()["outputs"]}
    want_scores, want_label = reference(x, ids)
    np.testing.assert_allclose(np.reshape(out["scores"]["data"], (3, 5)), want_scores,
                               atol=ATOL, rtol=1e-4)
    assert out["label"]["data"] == want_label.tolist()


def test_v2_binary_outputs_when_asked(server, reference):
    import json

    import requests

    x, ids = _inputs(2)
    body, headers = _binary_body(x, ids, outputs=[
        {"name": "scores", "parameters": {"binary_data": True}}, {"name": "label"}])
    resp = requests.post(f"{server.base_url}/v2/models/{NAME}/infer", data=body,
                         headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    length = int(resp.headers[BINARY])
    meta = json.loads(resp.content[:length])
    scores, label = meta["outputs"]
    assert "data" not in scores and scores["parameters"]["binary_data_size"] == 2 * 5 * 4
    want_scores, want_label = reference(x, ids)
    np.testing.assert_allclose(np.frombuffer(resp.content[length:], "<f4").reshape(2, 5),
                               want_scores, atol=ATOL, rtol=1e-4)
    assert label["data"] == want_label.tolist()


@pytest.mark.parametrize("shape", [[-1, 16], [1.5, 16], [2, 15]])
def test_v2_bad_binary_shape_is_400_in_one_line(server, shape):
    """KServe's own decoder answered [-1, 16] and [1.5, 16] with a 500 and a traceback."""
    import time

    import requests

    x, ids = _inputs(2)
    before = len(server.log_text())
    body, headers = _binary_body(x, ids, x_shape=shape)
    resp = requests.post(f"{server.base_url}/v2/models/{NAME}/infer", data=body,
                         headers=headers, timeout=60)
    assert resp.status_code == 400, resp.text
    assert "shape" in resp.json()["error"]
    time.sleep(0.5)
    new = server.log_text()[before:]
    assert new.count("400 INVALID_ARGUMENT") == 1 and "Traceback" not in new, new


def test_kserve_own_400s_are_logged_in_one_line(server):
    """A V1 body that is not JSON, and gRPC raw contents that do not match the inputs, are
    found by KServe before the predictor runs; each is 400 / INVALID_ARGUMENT in one line."""
    import time

    import grpc
    import requests
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    before = len(server.log_text())
    resp = requests.post(f"{server.base_url}/v1/models/{NAME}:predict", data=b"\x00not json",
                         headers={"Content-Type": "application/json"}, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]
    x, ids = _inputs(1)
    request = pb.ModelInferRequest(model_name=NAME, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 16])],
        raw_input_contents=[x.tobytes(), ids.tobytes()])  # two raw contents for one input
    with grpc.insecure_channel(server.grpc_url) as channel:
        with pytest.raises(grpc.RpcError) as info:
            grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request,
                                                                                   timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.5)
    new = server.log_text()[before:]
    assert new.count("400 INVALID_ARGUMENT") == 2 and "Traceback" not in new, new


def test_client_errors_are_logged_in_one_line(server):
    """Hostile traffic must not fill the log: a client's error is one line, no traceback."""
    import time

    x, ids = _inputs(2)
    before = len(server.log_text())
    bad = [_v2_request(x.astype(np.float64), ids, datatypes=("FP64", "INT64")),
           _v2_request(x[:, :15].copy(), ids)]
    assert [_status_of(_rest_call(server, "v2", req)) for req in bad] == [400, 400]
    time.sleep(0.5)
    new = server.log_text()[before:]
    assert new.count("400 INVALID_ARGUMENT") == len(bad), new
    assert "Traceback" not in new, new


def test_v1_bad_requests_are_400(server):
    x, ids = _inputs(1)
    good = {"x": x[0].tolist(), "ids": ids[0].tolist()}
    bad = [
        {"instances": [{**good, "x": ["a"] * 16}]},                  # strings for FP32
        {"instances": [{**good, "ids": [0.5, 1.5, 2.5, 3.5]}]},      # fractions for INT64
        {"instances": [{**good, "x": x[0, :15].tolist()}]},         # shape 15, not 16
        {"instances": [{**good, "nope": [1]}]},                      # unknown input
        {"instances": [{"x": good["x"]}]},                           # missing input
        {"instances": [[1.0, 2.0]]},                                 # two inputs need names
        {"rows": []},                                                # no instances
    ]
    assert [_status_of(_rest_call(server, "v1", body)) for body in bad] == [400] * len(bad)


def test_v2_bad_requests_are_400(server):
    from kserve import InferInput, InferRequest

    x, ids = _inputs(2)
    wrong_dtype = _v2_request(x.astype(np.float64), ids, datatypes=("FP64", "INT64"))
    wrong_shape = _v2_request(x[:, :15].copy(), ids)
    short = InferRequest(model_name=NAME, infer_inputs=[
        InferInput("x", [2, 16], "FP32", data=[0.5] * 10),
        InferInput("ids", [2, 4], "INT64", data=[1] * 8)])
    unknown = InferRequest(model_name=NAME, infer_inputs=[
        InferInput("y", [2, 16], "FP32", data=[0.5] * 32)])
    statuses = [_status_of(_rest_call(server, "v2", req))
                for req in (wrong_dtype, wrong_shape, short, unknown)]
    assert statuses == [400, 400, 400, 400]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_unknown_model_is_404(server, protocol):
    x, ids = _inputs(1)
    data = ({"instances": [{"x": x[0].tolist(), "ids": ids[0].tolist()}]} if protocol == "v1"
            else _v2_request(x, ids))
    assert _status_of(_rest_call(server, protocol, data, model="no-such-model")) == 404


def test_grpc_errors(server):
    import grpc
    from kserve import InferRequest

    x, ids = _inputs(1)

    async def code(req):
        g = _grpc(server)
        try:
            await g.infer(req)
        except grpc.RpcError as exc:
            return exc.code()
        finally:
            await g.close()
        return grpc.StatusCode.OK

    wrong = _v2_request(x.astype(np.float64), ids, datatypes=("FP64", "INT64"))
    unknown = _v2_request(x, ids)
    unknown = InferRequest(model_name="no-such-model", infer_inputs=unknown.inputs)
    assert asyncio.run(code(wrong)) == grpc.StatusCode.INVALID_ARGUMENT
    assert asyncio.run(code(unknown)) == grpc.StatusCode.NOT_FOUND


def test_metrics_show_yellowstone_series(server):
    """KServe's /metrics carries the core's series: the backend in use (the one the response
    names), the compile time, and inference timings when a compiled backend serves."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    x, ids = _inputs(1)
    body = {"instances": [{"x": x[0].tolist(), "ids": ids[0].tolist()}]}
    backend = requests.post(f"{server.base_url}/v1/models/{NAME}:predict", json=body,
                            timeout=60).headers["x-yellowstone-backend"]
    text = requests.get(f"{server.base_url}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    in_use = [s.labels["backend"] for s in families["yellowstone_backend_in_use"].samples
              if s.value == 1]
    assert in_use == [backend]
    compile_s = families["yellowstone_compile_seconds"]
    assert compile_s.type == "summary"
    assert [s.value for s in compile_s.samples if s.name.endswith("_count")] == [1]
    if backend != "native":  # the framework's own calls are not timed by the core
        timings = families["yellowstone_inference_ms"]
        assert timings.type == "summary"
        assert sum(s.value for s in timings.samples if s.name.endswith("_count")) >= 1


def test_still_serving_after_errors(server, reference):
    """Runs last in this module: after every failure above, the same process answers correctly."""
    x, ids = _inputs(2)

    async def go():
        c = _rest("v2")
        try:
            return await c.infer(server.base_url, _v2_request(x, ids), model_name=NAME)
        finally:
            await c.close()

    _check_v2(asyncio.run(go()), x, ids, reference)
    assert server.alive()
