"""Bytes that are no protobuf message, sent to KServe's gRPC methods: one log line, no traceback.

KServe builds its gRPC server itself, so the answer stays grpc's own for a request it cannot
deserialize (UNKNOWN); the predictor only makes the log say it in one WARNING line, and goes on
answering good requests.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = [pytest.mark.server, pytest.mark.onnxruntime, pytest.mark.timeout(600)]

NAME = "twohead"
GARBAGE = b"\xff\xff\xff\xff\x0f not a protobuf message"
METHODS = ("/inference.GRPCInferenceService/ModelInfer",
           "/inference.GRPCInferenceService/ModelMetadata")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ksmodels

    root = tmp_path_factory.mktemp("kserve-garbage")
    ksmodels.write_two_head_onnx(root / "models")
    yield from ksmodels.served(NAME, root)


def _good_infer(server) -> list[list[int]]:
    import grpc
    import ksmodels
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    rng = np.random.default_rng()
    x = rng.standard_normal((2, 16)).astype(np.float32)
    ids = rng.integers(1, ksmodels.VOCAB, (2, 4)).astype(np.int64)
    request = pb.ModelInferRequest(model_name=NAME, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 16]),
        pb.ModelInferRequest.InferInputTensor(name="ids", datatype="INT64", shape=[2, 4])],
        raw_input_contents=[x.tobytes(), ids.tobytes()])
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        resp = stub.ModelInfer(request, timeout=60)
    return [list(o.shape) for o in resp.outputs]


@pytest.mark.parametrize("method", METHODS)
def test_garbage_is_logged_in_one_line_and_the_server_goes_on(server, method):
    import grpc

    before = len(server.log_text())
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                call(GARBAGE, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNKNOWN  # grpc's, in KServe's server
            assert "DecodeError" in err.value.details()
    assert _good_infer(server) == [[2, 5], [2]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = server.log_text()[before:]
        lines = [line for line in log.splitlines() if "cannot parse the request" in line]
        if len(lines) >= 3:
            break
        time.sleep(0.2)
    assert "Traceback" not in log, log
    assert len(lines) == 3 and all("WARNING" in line and method in line for line in lines), log
    assert server.alive()
