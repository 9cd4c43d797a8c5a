"""One boosted ONNX model (FP32 + INT64 in, FP32 + INT64 out) behind KServe's ModelServer:
V1 and V2 over REST, V2 over gRPC, metadata, readiness, concurrency and the failure modes,
all through KServe's own clients against the real server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import FAST, start_server, stop_server

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


@pytest.mark.parametrize(("protocol", "status"), [("v1", 400), ("v2", 422)])
def test_malformed_json_is_4xx(server, protocol, status):
    """KServe answers V1 with InvalidInput (400), V2 with FastAPI's body validation (422)."""
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [1.0, 2'
    assert _status_of(_rest_call(server, protocol, body, headers=dict(JSON))) == status


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
