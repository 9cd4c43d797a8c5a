"""Bytes that are no protobuf message, sent to each gRPC service: one log line, no traceback.

tensorflow_model_server answers a request it cannot deserialize ``INTERNAL`` (gRPC C++), and so
does the drop-in; the server goes on answering good requests.
"""

from __future__ import annotations

import numpy as np
import pytest
from tfs_server import TFServer, build_model, importorskip_client, predict

pytestmark = [pytest.mark.server, pytest.mark.tensorflow]
_, grpc, _ = importorskip_client()

GARBAGE = b"\xff\xff\xff\xff\x0f not a protobuf message"
METHODS = ("/tensorflow.serving.PredictionService/Predict",
           "/tensorflow.serving.PredictionService/GetModelMetadata",
           "/tensorflow.serving.ModelService/GetModelStatus")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-garbage")
    build_model("keras", root / "m" / "1")
    with TFServer(root, "--model_name=m", f"--model_base_path={root / 'm'}",
                  "--yellowstone_shim=off") as srv:
        yield srv


@pytest.mark.parametrize("method", METHODS)
def test_garbage_is_answered_internal_in_one_log_line(server, method):
    before = len(server.log_text())
    call = server.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            call(GARBAGE, timeout=30)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "Cannot parse the request" in err.value.details()
    x = np.random.default_rng().standard_normal((2, 8)).astype(np.float32)
    assert predict(server.channel, "m", {"x": x}, timeout=60)["output_0"].shape == (2, 3)
    log = server.log_text()[before:]
    assert "Traceback" not in log and "ERROR" not in log, log
    lines = [line for line in log.splitlines() if method in line]
    assert len(lines) == 3 and all("WARNING" in line for line in lines), log
