"""Fixtures for the TorchServe tests: tiny models in every form, a shared compile cache."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "assets"))

if shutil.which("java") is None:
    pytest.skip("TorchServe needs Java (17+) on PATH", allow_module_level=True)
pytest.importorskip("ts", reason="torchserve is not installed (pip install 'yellowstone[torchserve]')")


@pytest.fixture(scope="session")
def ys_cache(tmp_path_factory) -> Path:
    """One compile cache for every worker of every server in the session."""
    return tmp_path_factory.mktemp("ys-cache")


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight models: eager state dicts, TorchScript, torch.export .pt2, ONNX."""
    import torch
    from sort_net import SortNet
    from tiny_cnn import TinyCNN

    out = tmp_path_factory.mktemp("models")
    torch.manual_seed(1234)
    cnn = TinyCNN().eval()
    torch.save(cnn.state_dict(), out / "tiny_cnn.pth")
    torch.save(SortNet().eval().state_dict(), out / "sort_net.pth")

    mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 4)).eval()
    x = torch.randn(2, 16)
    torch.jit.trace(mlp, x).save(str(out / "mlp.pt"))
    batch = torch.export.Dim("batch")  # no max: the core re-exports with its own range
    ep = torch.export.export(mlp, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(out / "mlp.pt2"))
    torch.onnx.export(mlp, (x,), str(out / "mlp.onnx"), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    torch.save(mlp.state_dict(), out / "mlp_state.pth")
    return {"cnn_state": out / "tiny_cnn.pth", "cnn_file": Path(__file__).parent / "assets" /
            "tiny_cnn.py", "sort_state": out / "sort_net.pth",
            "sort_file": Path(__file__).parent / "assets" / "sort_net.py",
            "ts": out / "mlp.pt", "pt2": out / "mlp.pt2", "onnx": out / "mlp.onnx",
            "dir": out}


@pytest.fixture(scope="session")
def mlp_reference(models):
    """Run the MLP as saved (TorchScript) on a batch: the expected outputs."""
    import torch

    module = torch.jit.load(str(models["ts"]))

    def ref(rows):
        with torch.inference_mode():
            return module(torch.tensor(rows, dtype=torch.float32)).numpy()

    return ref
