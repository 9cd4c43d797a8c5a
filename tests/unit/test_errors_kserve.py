"""The error table through KServe's real request paths, with a BoostModel whose ``boosted.run``
raises each error.

REST: KServe's FastAPI app as ``ModelServer`` builds it (``RESTServer.create_application``),
in process through Starlette's TestClient. gRPC: KServe's servicer behind KServe's own
interceptors on a grpc.aio server on a free loopback port. Both must answer the table's
status, in KServe's envelope, and log a client's error in one line without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from tests.error_table import ERROR_CASES, ERROR_IDS

pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from yellowstone.serving import status_of  # noqa: E402
from yellowstone.spec import TensorSpec  # noqa: E402

NAME = "ys-errors"


class FakeBoosted:
    """The part of ``BoostedModel`` the predictor uses: y = 2x, or ``error`` raised by run."""

    backend = "fake"
    inputs = (TensorSpec(name="x", shape=(None, 16), dtype="float32"),)
    output_names = ("y",)
    handle = SimpleNamespace(batched=True)

    def __init__(self):
        self.error: BaseException | None = None
        self.calls = 0

    def run(self, feeds):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [feeds["x"] * 2.0]

    def run_answered(self, feeds):
        return self.run(feeds), self.backend


class _GrpcServer:
    """KServe's gRPC servicer and interceptors on 127.0.0.1:<free port>, in a thread's loop."""

    def __init__(self, dataplane, extension):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None
        self.port = asyncio.run_coroutine_threadsafe(self._start(dataplane, extension),
                                                     self.loop).result(60)

    async def _start(self, dataplane, extension) -> int:
        from concurrent import futures

        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer

        self.server = aio.server(futures.ThreadPoolExecutor(max_workers=2),
                                 interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()))
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(dataplane, extension), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)


@pytest.fixture(scope="module")
def served():
    """(model, REST client, gRPC stub) over one registry: KServe's REST app and gRPC servicer."""
    import grpc
    from kserve import model_server
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer
    from starlette.testclient import TestClient

    from yellowstone.plugins.kserve.model import BoostModel

    model = BoostModel(NAME, "/no/model/dir")  # never loaded: boosted is set below
    model.boosted, model.ready = FakeBoosted(), True
    registry = ModelRepository()
    registry.update(model)
    dataplane = DataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    RESTServer(model_server.FASTAPI_APP_IMPORT_STRING, dataplane, extension,
               http_port=0).create_application()
    client = TestClient(model_server.app, raise_server_exceptions=False)
    server = _GrpcServer(dataplane, extension)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield model, client, grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()
        server.stop()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logs():
    """Every record logged at WARNING or above, KServe's own (which does not propagate) too."""
    handler = _Records()
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(), logging.getLogger("kserve")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler.records
    for lg in loggers:
        lg.removeHandler(handler)


@pytest.fixture
def raising(served):
    """Set the error ``boosted.run`` raises; cleared afterwards."""
    model = served[0]

    def set_error(error):
        model.boosted.error = error

    yield set_error
    model.boosted.error = None


def _x(batch: int = 1) -> np.ndarray:
    return np.random.default_rng().standard_normal((batch, 16)).astype(np.float32)


def _rest(client, protocol: str, x: np.ndarray, shape=None):
    if protocol == "v1":
        return client.post(f"/v1/models/{NAME}:predict", json={"instances": x.tolist()})
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape or list(x.shape),
                        "data": x.ravel().tolist()}]}
    return client.post(f"/v2/models/{NAME}/infer", json=body)


def _grpc(stub, x: np.ndarray, shape=None):
    """(status code name, details, response) of one ModelInfer call."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    req = pb.ModelInferRequest(model_name=NAME, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=shape or list(x.shape),
        contents=pb.InferTensorContents(fp32_contents=x.ravel().tolist()))])
    try:
        resp = stub.ModelInfer(req, timeout=60)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details(), None
    return "OK", "", resp


def _check_logged_once(logs, error, http: int) -> None:
    """A client's error: one WARNING line, no traceback anywhere; a server fault: its traceback."""
    ours = [r for r in logs if r.name.startswith("yellowstone.plugins.kserve")]
    assert len(ours) == 1, [r.getMessage() for r in logs]
    record = ours[0]
    assert str(http) in record.getMessage() and "\n" not in record.getMessage()
    if http < 500:
        assert record.levelno == logging.WARNING
        assert [r for r in logs if r.exc_info] == []
    else:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and record.exc_info[1] is error


# -- the path serves ------------------------------------------------------------------------------
def test_serves_over_rest_v1_v2_and_grpc(served):
    _, client, stub = served
    x = _x(2)
    r1, r2 = _rest(client, "v1", x), _rest(client, "v2", x)
    assert (r1.status_code, r2.status_code) == (200, 200), (r1.text, r2.text)
    np.testing.assert_allclose(r1.json()["predictions"], x * 2.0, rtol=1e-6)
    out = r2.json()["outputs"][0]
    assert (out["name"], out["shape"], out["datatype"]) == ("y", [2, 16], "FP32")
    np.testing.assert_allclose(np.reshape(out["data"], (2, 16)), x * 2.0, rtol=1e-6)
    assert r2.headers["x-yellowstone-backend"] == "fake"
    code, _, resp = _grpc(stub, x)
    assert code == "OK"
    got = np.frombuffer(resp.raw_output_contents[0], np.float32) if resp.raw_output_contents \
        else np.asarray(resp.outputs[0].contents.fp32_contents, np.float32)
    np.testing.assert_allclose(got.reshape(2, 16), x * 2.0, rtol=1e-6)


# -- the table ------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["v1", "v2"])
@pytest.mark.parametrize(("error", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_rest_answers_the_table_status(served, raising, logs, protocol, error, http, grpc_code):
    model, client, _ = served
    raising(error)
    calls = model.boosted.calls
    resp = _rest(client, protocol, _x())
    assert model.boosted.calls == calls + 1  # the error came from boosted.run
    assert resp.status_code == http, resp.text
    assert resp.json() == {"error": status_of(error).message}
    _check_logged_once(logs, error, http)


@pytest.mark.parametrize(("error", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_grpc_answers_the_table_code(served, raising, logs, error, http, grpc_code):
    model, _, stub = served
    raising(error)
    calls = model.boosted.calls
    code, details, _ = _grpc(stub, _x())
    assert model.boosted.calls == calls + 1
    assert code == grpc_code
    assert details == status_of(error).message
    _check_logged_once(logs, error, http)


# -- bad request shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[-1, 16], [1, -16], [1.5, 16], [0.5, 32]])
def test_rest_bad_shape_dimension_is_400_in_one_line(served, logs, shape):
    model, client, _ = served
    calls = model.boosted.calls
    resp = _rest(client, "v2", _x(), shape=shape)
    assert resp.status_code == 400, resp.text
    assert "shape" in resp.json()["error"]
    assert model.boosted.calls == calls  # never reached the model
    assert [r for r in logs if r.exc_info] == []
    assert len(logs) == 1 and "\n" not in logs[0].getMessage()


@pytest.mark.parametrize("shape", [[-1, 16], [16, -1]])
def test_grpc_negative_dimension_is_invalid_argument(served, logs, shape):
    code, details, _ = _grpc(served[2], _x(), shape=shape)
    assert code == "INVALID_ARGUMENT" and "shape" in details
    assert [r for r in logs if r.exc_info] == []


def test_still_serving_after_errors(served):
    x = _x(3)
    resp = _rest(served[1], "v1", x)
    assert resp.status_code == 200
    np.testing.assert_allclose(resp.json()["predictions"], x * 2.0, rtol=1e-6)


# -- /metrics -------------------------------------------------------------------------------------
def test_metrics_endpoint_shows_yellowstone_series(served):
    from prometheus_client.parser import text_string_to_metric_families

    from yellowstone import metrics

    model = f"kserve-{uuid.uuid4().hex[:8]}"
    metrics.emit(metrics.FALLBACKS, 1, model=model, backend="openvino", reason="runtime")
    metrics.emit(metrics.FALLBACKS, 1, model=model, backend="openvino", reason="runtime")
    metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model=model, backend="onnxruntime")
    for ms in (2.0, 3.5):
        metrics.emit(metrics.INFERENCE_MS, ms, "ms", model=model, backend="onnxruntime")
    resp = served[1].get("/metrics")
    assert resp.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}

    def sample(family: str, name: str) -> float:
        (value,) = [s.value for s in families[family].samples
                    if s.name == name and s.labels.get("model") == model]
        return value

    assert families["yellowstone_fallbacks"].type == "counter"
    assert sample("yellowstone_fallbacks", "yellowstone_fallbacks_total") == 2
    assert families["yellowstone_backend_in_use"].type == "gauge"
    assert sample("yellowstone_backend_in_use", "yellowstone_backend_in_use") == 1
    assert families["yellowstone_inference_ms"].type == "summary"
    assert sample("yellowstone_inference_ms", "yellowstone_inference_ms_count") == 2
    assert sample("yellowstone_inference_ms", "yellowstone_inference_ms_sum") == pytest.approx(5.5)
    assert sample("yellowstone_inference_ms_last", "yellowstone_inference_ms_last") == 3.5
    assert resp.text.count("# TYPE yellowstone_fallbacks_total counter") + resp.text.count(
        "# TYPE yellowstone_fallbacks counter") == 1  # registered once


# -- KServe's own 400s before the predictor: one line through the entry point's log filter --------
@pytest.fixture
def log_filter():
    from yellowstone.plugins.kserve import errors

    kserve_logger = logging.getLogger("kserve")
    errors.install_log_filter(kserve_logger)
    yield
    for f in [f for f in kserve_logger.filters if isinstance(f, errors.ClientErrorLogFilter)]:
        kserve_logger.removeFilter(f)


@pytest.mark.parametrize("raw", ["two-for-one", "contents-too", "short"])
def test_grpc_raw_contents_mismatch_is_invalid_argument_in_one_line(served, logs, log_filter, raw):
    """Two raw contents for one input, or raw contents and ``contents`` together, are KServe's
    InvalidInput (its servicer checks them); raw bytes that do not fit the shape are ours."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    model, _, stub = served
    x = _x()
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 16])
    if raw == "contents-too":
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
    contents = {"two-for-one": [x.tobytes(), x.tobytes()], "contents-too": [x.tobytes()],
                "short": [x.tobytes()[:60]]}[raw]
    calls = model.boosted.calls
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(pb.ModelInferRequest(model_name=NAME, inputs=[tensor],
                                             raw_input_contents=contents), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert model.boosted.calls == calls
    assert [r for r in logs if r.exc_info] == []
    lines = {r.getMessage() for r in logs}
    assert len(lines) == 1 and all(r.levelno == logging.WARNING for r in logs), lines
    assert "400 INVALID_ARGUMENT" in next(iter(lines)) and "\n" not in next(iter(lines))
