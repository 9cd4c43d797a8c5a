"""A TorchScript model shipped with a precompiled yellowstone artifact directory in /mnt/models:
the predictor loads the artifact (no compile), names the inputs from it, and serves it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ksserver import FAST, infer_v1_and_v2, start_server, stop_server

pytestmark = [pytest.mark.server, pytest.mark.onnxruntime, pytest.mark.timeout(600)]

NAME = "mlp"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """/mnt/models as a user ships it: model.pt plus yellowstone/ from ``yellowstone compile``."""
    import ksmodels
    import torch

    import yellowstone

    d = tmp_path_factory.mktemp("kserve-artifact")
    path = ksmodels.write_mlp_torchscript(d / "models")
    yellowstone.compile(str(path), torch.randn(2, 16), out=str(d / "models" / "yellowstone"),
                        backends="onnxruntime", time_budget_s=0.05, validation_rounds=1,
                        cache_dir=str(d / "compile-cache"))
    return d


@pytest.fixture(scope="module")
def server(shipped):
    srv = start_server(NAME, shipped / "models", shipped, *FAST,
                       cache_dir=shipped / "empty-server-cache")
    yield srv
    stop_server(srv)


def test_loads_the_artifact_instead_of_compiling(server, shipped):
    meta = json.loads((shipped / "models" / "yellowstone" / "yellowstone.json").read_text())
    log = server.log_text()
    assert f"{NAME}: ready on {meta['backend']} (cache artifact" in log
    assert "compiling" not in log


def test_values_over_v1_and_v2(server):
    import ksmodels
    import torch
    model = ksmodels.mlp()
    x = np.random.default_rng().standard_normal((3, 16)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()

    out1, out2 = infer_v1_and_v2(server, "input", x)  # a traced Sequential names it "input"
    np.testing.assert_allclose(np.array(out1["predictions"], np.float32), want, atol=1e-4)
    (out,) = out2.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("output", "FP32", [3, 4])
    np.testing.assert_allclose(out.as_numpy(), want, atol=1e-4)
