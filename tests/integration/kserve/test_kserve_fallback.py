"""A model no backend compiles (TorchScript with i0e/digamma): the predictor says so, reports
ready, and serves on native with the framework's exact outputs. Options come from
``yellowstone.yaml`` in the model directory."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from ksserver import start_server, stop_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

NAME = "special"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ksmodels

    d = tmp_path_factory.mktemp("kserve-fallback")
    ksmodels.write_uncompilable_torchscript(d / "models")
    (d / "models" / "yellowstone.yaml").write_text(
        "inputs: ['x:2x16:float32']\nbackends: onnxruntime,openvino\ntime_budget_s: 0.05\n"
        "validation_rounds: 1\n")
    srv = start_server(NAME, d / "models", d, "--enable_latency_logging", "false")
    yield srv
    stop_server(srv)


def test_fallback_is_visible_and_ready(server):
    from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig

    log = server.log_text()
    assert "serving on native (fallback): no candidate passed" in log
    assert f"{NAME}: ready on native" in log

    async def go():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        g = InferenceGRPCClient(server.grpc_url, retries=0)
        try:
            return (await v2.is_model_ready(server.base_url, NAME), await g.is_model_ready(NAME))
        finally:
            await v2.close(), await g.close()

    assert asyncio.run(go()) == (True, True)


def test_fallback_is_counted_on_metrics(server):
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{server.base_url}/metrics", timeout=30).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["yellowstone_fallbacks"].type == "counter"
    assert [(s.name, s.labels["reason"], s.value) for s in families["yellowstone_fallbacks"].samples
            if s.name.endswith("_total")] == [("yellowstone_fallbacks_total", "compile", 1.0)]
    assert [s.labels["backend"] for s in families["yellowstone_backend_in_use"].samples
            if s.value == 1] == ["native"]


def test_serves_native_values(server, tmp_path):
    import torch
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    module = torch.jit.load(str(server.log.parent / "models" / "model.pt"))
    x = np.random.default_rng().standard_normal((5, 16)).astype(np.float32)
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()

    async def go():
        g = InferenceGRPCClient(server.grpc_url, retries=0)
        try:
            inp = InferInput("x", [5, 16], "FP32")
            inp.set_data_from_numpy(x)
            return await g.infer(InferRequest(NAME, [inp]))
        finally:
            await g.close()

    resp = asyncio.run(go())
    assert resp.parameters["yellowstone_backend"].string_param == "native"
    np.testing.assert_allclose(resp.outputs[0].as_numpy(), want, rtol=1e-6, atol=1e-6)
