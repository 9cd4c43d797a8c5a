"""An int8 text encoder in /mnt/models: ``yellowstone.yaml`` names its inputs, ships real
examples and a calibration set, and asks for int8; the predictor quantises, validates by cosine
similarity and serves over gRPC V2 with embeddings close to PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
from ksserver import FAST, start_server, stop_server

pytestmark = [pytest.mark.server, pytest.mark.torch, pytest.mark.onnxruntime,
              pytest.mark.timeout(600)]

NAME = "encoder"
VOCAB, SEQ = 200, 16


def _encoder():
    import torch

    class Encoder(torch.nn.Module):
        """Token embedding, a two-layer MLP per token, mean over the unpadded tokens."""

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 64)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(),
                                           torch.nn.Linear(256, 64))

        def forward(self, input_ids, attention_mask):
            h = self.mlp(self.emb(input_ids))
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    torch.manual_seed(5)
    return Encoder().eval()


def _tokens(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` padded "sentences": ids in the vocabulary, masks of ones then zeros."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int64) * mask
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch
    import yaml

    d = tmp_path_factory.mktemp("kserve-int8")
    models = d / "models"
    models.mkdir()
    ex = _tokens(4, seed=1)
    torch.jit.trace(_encoder(), (torch.from_numpy(ex["input_ids"]),
                                 torch.from_numpy(ex["attention_mask"]))).save(str(models / "model.pt"))
    np.savez(models / "examples.npz", **ex)
    np.savez(models / "calib.npz", **_tokens(24, seed=2))
    (models / "yellowstone.yaml").write_text(yaml.safe_dump({
        "inputs": [f"input_ids:-1x{SEQ}:int64", f"attention_mask:-1x{SEQ}:int64"],
        "examples": "examples.npz", "precision": "int8", "task": "embedding",
        "calibration": "calib.npz"}))
    return d


@pytest.fixture(scope="module")
def server(model_dir):
    srv = start_server(NAME, model_dir / "models", model_dir, *FAST)
    yield srv
    stop_server(srv)


def test_serves_int8_embeddings_close_to_pytorch(server):
    import asyncio

    import torch
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    log = server.log_text()
    assert "(int8, cache" in log and "ready on native" not in log, log[-3000:]
    feeds = _tokens(6, seed=int(np.random.default_rng().integers(1000, 10**6)))

    async def go():
        client = InferenceGRPCClient(server.grpc_url, retries=0, timeout=60)
        try:
            tensors = []
            for name, arr in feeds.items():
                inp = InferInput(name, list(arr.shape), "INT64")
                inp.set_data_from_numpy(arr)
                tensors.append(inp)
            return await client.infer(InferRequest(NAME, tensors))
        finally:
            await client.close()

    (out,) = asyncio.run(go()).outputs
    got = out.as_numpy()
    with torch.no_grad():
        want = _encoder()(torch.from_numpy(feeds["input_ids"]),
                          torch.from_numpy(feeds["attention_mask"])).numpy()
    assert got.shape == want.shape == (6, 64)
    cos = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.mean() >= 0.98, cos
    assert not np.allclose(got, want, atol=1e-6)  # quantised, not the fp32 model


def test_missing_examples_file_is_named(tmp_path):
    from yellowstone.errors import ConfigError
    from yellowstone.plugins.kserve.layout import read_options, resolve_layout

    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "yellowstone.yaml").write_text("examples: nope.npz\n")
    with pytest.raises(ConfigError, match="examples file .*nope.npz does not exist"):
        read_options(resolve_layout(tmp_path))
