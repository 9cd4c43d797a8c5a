"""The predictor's REST routes ahead of KServe's: the same answers as KServe's own routes, bytes
and JSON alike, with the body decoded by NumPy; a bad body is 400 in one log line; a plain
``kserve.Model`` in the same server still goes through KServe's route.

Two FastAPI apps over one DataPlane, as ``RESTServer.create_application`` builds them: KServe's
routes only, and the same with ``routes.install`` (both with ``errors.install``, as before).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from yellowstone.spec import TensorSpec  # noqa: E402

BOOST, PLAIN = "ys-routes", "plain-routes"
HEADER = "inference-header-content-length"


class FakeBoosted:
    """The part of ``BoostedModel`` the predictor uses: y = 2x and the argmax of each row."""

    backend = "fake"
    inputs = (TensorSpec(name="x", shape=(None, 16), dtype="float32"),)
    output_names = ("y", "label")
    handle = SimpleNamespace(batched=True)

    def run(self, feeds):
        x = feeds["x"]
        return [x * 2.0, x.argmax(1).astype(np.int64)]

    def run_answered(self, feeds):
        return self.run(feeds), self.backend


def _plain_model():
    import kserve
    from kserve.protocol.infer_type import InferOutput, InferResponse

    class Plain(kserve.Model):
        """A stock predictor: KServe decodes the body, ``as_numpy`` gives the tensor."""

        def predict(self, payload, headers=None):
            x = payload.inputs[0].as_numpy()
            outs = []
            for name, y in (("y", x * 2.0), ("label", x.argmax(1).astype(np.int64))):
                out = InferOutput(name, list(y.shape), "FP32" if name == "y" else "INT64")
                out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
                outs.append(out)
            return InferResponse(payload.id, self.name, outs, use_binary_outputs=
                                 payload.use_binary_outputs,
                                 requested_outputs=payload.request_outputs)

    model = Plain(PLAIN)
    model.load()
    return model


def _app(dataplane, extension, *, ours: bool):
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse
    from kserve.protocol.rest.server import RESTServer
    from starlette.testclient import TestClient

    from yellowstone.plugins.kserve import errors, routes

    app = FastAPI(default_response_class=ORJSONResponse)
    errors.install(app)
    if ours:
        routes.install(app)
    server = RESTServer("kserve.model_server:app", dataplane, extension, http_port=0)
    server._register_endpoints(app)
    server._add_exception_handlers(app)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def served():
    """(BoostModel, client with our routes, client with KServe's routes only)."""
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    from yellowstone.plugins.kserve.model import BoostModel

    model = BoostModel(BOOST, "/no/model/dir")
    model.boosted, model.ready = FakeBoosted(), True
    registry = ModelRepository()
    registry.update(model)
    registry.update(_plain_model())
    dataplane = DataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    return (model, _app(dataplane, extension, ours=True),
            _app(dataplane, extension, ours=False))


@pytest.fixture
def decoded(monkeypatch):
    """How many bodies the NumPy decoder decoded during the test."""
    from yellowstone.plugins.kserve import routes, v2rest

    calls = []
    real = v2rest.decode_request

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(routes.v2rest, "decode_request", counting)
    return calls


@pytest.fixture
def logs():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    # KServe's logger propagates unless KServe configured logging: each record once.
    handler.emit = lambda r: None if r in records else records.append(r)  # type: ignore[method-assign]
    loggers = [logging.getLogger(), logging.getLogger("kserve")]
    for lg in loggers:
        lg.addHandler(handler)
    yield records
    for lg in loggers:
        lg.removeHandler(handler)


def _x(batch: int = 2) -> np.ndarray:
    return np.random.default_rng().standard_normal((batch, 16)).astype(np.float32)


def _binary(x: np.ndarray, shape=None, **extra) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body as KServe's InferenceRESTClient sends it."""
    raw = x.astype("<f4").tobytes()
    header = orjson.dumps({"id": "req-1", "inputs": [
        {"name": "x", "shape": shape or list(x.shape), "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw)}}], **extra})
    return header + raw, {HEADER: str(len(header)), "content-type": "application/octet-stream"}


def _post(client, model: str, body: bytes, headers: dict[str, str]):
    return client.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def _split(resp) -> tuple[dict, bytes]:
    """A V2 response: its JSON and the binary outputs after it."""
    length = int(resp.headers.get(HEADER, len(resp.content)))
    return orjson.loads(resp.content[:length]), resp.content[length:]


# -- same answers as KServe's routes ----------------------------------------------------------------
@pytest.mark.parametrize("extra", [
    {},
    {"parameters": {"binary_data_output": True}},
    {"outputs": [{"name": "label", "parameters": {"binary_data": True}}]},
    {"outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "label"}]},
], ids=["json-out", "binary-out", "one-binary-output", "mixed"])
def test_binary_request_answers_as_kserve(served, decoded, extra):
    _, ours, theirs = served
    x = _x()
    body, headers = _binary(x, **extra)
    a, b = _post(ours, BOOST, body, headers), _post(theirs, BOOST, body, headers)
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert decoded == [BOOST]  # ours decoded it; KServe's app went through from_bytes
    assert a.content == b.content
    assert a.headers.get(HEADER) == b.headers.get(HEADER)
    assert a.headers["x-yellowstone-backend"] == "fake"
    meta, raw = _split(a)
    outputs = {o["name"]: o for o in meta["outputs"]}
    if "y" in outputs and "data" not in outputs["y"]:
        np.testing.assert_array_equal(np.frombuffer(raw[:x.nbytes], "<f4").reshape(x.shape), x * 2)
    elif "y" in outputs:
        np.testing.assert_array_equal(np.reshape(outputs["y"]["data"], x.shape), x * 2)
    assert bool(raw) == ("binary_data" in str(extra))


def test_json_request_answers_as_kserve(served, decoded):
    _, ours, theirs = served
    x = _x(3)
    body = orjson.dumps({"id": "req-2", "inputs": [{"name": "x", "shape": [3, 16],
                                                    "datatype": "FP32", "data": x.ravel().tolist()}]})
    headers = {"content-type": "application/json"}
    a, b = _post(ours, BOOST, body, headers), _post(theirs, BOOST, body, headers)
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert decoded == [BOOST]
    assert a.content == b.content and a.headers["content-type"] == b.headers["content-type"]
    assert a.json()["outputs"][1] == {"name": "label", "shape": [3], "datatype": "INT64",
                                      "parameters": None, "data": x.argmax(1).tolist()}


def test_binary_equals_json_path(served):
    _, ours, _ = served
    x = _x(4)
    binary = _post(ours, BOOST, *_binary(x))
    json_body = orjson.dumps({"id": "req-1", "inputs": [
        {"name": "x", "shape": [4, 16], "datatype": "FP32", "data": x.ravel().tolist()}]})
    plain = _post(ours, BOOST, json_body, {"content-type": "application/json"})
    assert binary.status_code == plain.status_code == 200
    assert binary.json() == plain.json()


def test_plain_model_goes_through_kserve(served, decoded):
    _, ours, theirs = served
    body, headers = _binary(_x())
    a, b = _post(ours, PLAIN, body, headers), _post(theirs, PLAIN, body, headers)
    assert a.status_code == b.status_code == 200
    assert decoded == []
    assert a.content == b.content


def test_unknown_model_and_not_ready(served):
    model, ours, _ = served
    body, headers = _binary(_x())
    assert _post(ours, "no-such-model", body, headers).status_code == 404
    model.ready = False
    try:
        assert _post(ours, BOOST, body, headers).status_code == 503
    finally:
        model.ready = True


# -- the client's errors: 400, one line ----------------------------------------------------------
@pytest.mark.parametrize("shape", [[-1, 16], [1.5, 16], [2, 15]])
def test_bad_binary_shape_is_400_in_one_line(served, logs, shape):
    model, ours, theirs = served
    body, headers = _binary(_x(), shape=shape)
    resp = _post(ours, BOOST, body, headers)
    assert resp.status_code == 400, resp.text
    assert "shape" in resp.json()["error"]
    assert [r for r in logs if r.exc_info] == []
    assert len(logs) == 1 and logs[0].levelno == logging.WARNING
    assert "400 INVALID_ARGUMENT" in logs[0].getMessage() and "\n" not in logs[0].getMessage()
    if shape != [2, 15]:  # what KServe's own decoder answered
        assert _post(theirs, BOOST, body, headers).status_code == 500


def test_bad_json_body_is_400(served, logs):
    resp = _post(served[1], BOOST, b'{"inputs": [{"name": "x", "shape": [1, ',
                 {"content-type": "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]
    assert len(logs) == 1 and not logs[0].exc_info


def test_v1_non_json_body_is_400_in_one_line(served, logs):
    _, ours, theirs = served
    body, headers = b"\x00not json", {"content-type": "application/json"}
    a = ours.post(f"/v1/models/{BOOST}:predict", content=body, headers=headers)
    assert a.status_code == 400
    assert len(logs) == 1 and logs[0].levelno == logging.WARNING and not logs[0].exc_info
    logs.clear()
    b = theirs.post(f"/v1/models/{BOOST}:predict", content=body, headers=headers)
    assert b.status_code == 400 and a.json() == b.json()  # KServe's answer, its traceback
    assert any(r.exc_info for r in logs)


def test_v1_still_serves(served):
    x = _x(2)
    resp = served[1].post(f"/v1/models/{BOOST}:predict", json={"instances": x.tolist()})
    assert resp.status_code == 200
    np.testing.assert_allclose([p["y"] for p in resp.json()["predictions"]], x * 2.0, rtol=1e-6)


# -- KServe's own 400s in its log ---------------------------------------------------------------------
def test_log_filter_makes_kserve_invalid_input_one_warning_line(logs):
    from kserve.errors import InvalidInput

    from yellowstone.plugins.kserve import errors

    kserve_logger = logging.getLogger("kserve")
    errors.install_log_filter(kserve_logger)
    try:
        for message in ("Exception:", "Error processing inference request: %s, grpc_method: %s"):
            try:
                raise InvalidInput("the number of inputs (1) does not match\n(2)")
            except InvalidInput as exc:
                args = () if message == "Exception:" else (exc, "ModelInfer")
                kserve_logger.exception(message, *args)  # as KServe: error(..., exc_info=True)
        kserve_logger.error("something else", exc_info=ValueError("boom"))
    finally:
        for f in [f for f in kserve_logger.filters if isinstance(f, errors.ClientErrorLogFilter)]:
            kserve_logger.removeFilter(f)
    first, second, other = logs
    for record in (first, second):
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert record.getMessage().startswith("400 INVALID_ARGUMENT: ")
        assert "the number of inputs (1) does not match (2)" in record.getMessage()
        assert "\n" not in record.getMessage()
    assert "ModelInfer" in second.getMessage()
    assert other.levelno == logging.ERROR and other.exc_info is not None
