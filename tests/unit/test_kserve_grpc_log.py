"""The KServe entry point's log filter on grpc's asyncio server: a request that does not parse
is one WARNING line, against a real ``grpc.aio`` server with KServe's generated handlers."""

from __future__ import annotations

import asyncio
import logging

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from yellowstone.plugins.kserve.__main__ import (  # noqa: E402
    GRPC_AIO_LOGGER,
    UnparsedRequestLogFilter,
)

METHOD = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture
def grpc_log(caplog):
    target = logging.getLogger(GRPC_AIO_LOGGER)
    filt = UnparsedRequestLogFilter()
    target.addFilter(filt)
    caplog.set_level(logging.INFO, GRPC_AIO_LOGGER)
    yield caplog
    target.removeFilter(filt)


def _call(payload: bytes, fail: bool = False) -> grpc.StatusCode:
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request, context):  # noqa: N802 - gRPC method name
            if fail:
                raise RuntimeError("a servicer bug")
            return pb.ModelInferResponse(model_name=request.model_name)

    async def go() -> grpc.StatusCode:
        server = aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    await channel.unary_unary(METHOD)(payload, timeout=30)
                except grpc.RpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK
        finally:
            await server.stop(0)

    return asyncio.run(go())


def test_garbage_is_one_warning_line(grpc_log):
    assert _call(b"\xff\xff\xff\xff\x0f garbage") == grpc.StatusCode.UNKNOWN
    (record,) = [r for r in grpc_log.records if r.name == GRPC_AIO_LOGGER]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith(f"{METHOD}: UNKNOWN: cannot parse the request: ")
    assert "inference.ModelInferRequest" in record.getMessage()


def test_other_failures_keep_their_traceback(grpc_log):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    assert _call(pb.ModelInferRequest(model_name="m").SerializeToString(), fail=True) == \
        grpc.StatusCode.UNKNOWN
    (record,) = [r for r in grpc_log.records if r.name == GRPC_AIO_LOGGER]
    assert record.levelno == logging.ERROR and record.exc_info is not None
