"""Tiny random-weight models for the KServe tests, written in the forms /mnt/models holds, and
:func:`served`, the predictor over one of them for a module fixture."""

from __future__ import annotations

from pathlib import Path

VOCAB = 50


def served(name: str, root: Path, *extra: str):
    """A module fixture's body: the predictor for ``root/models`` (logs and cache in ``root``) with
    the fast test flags (``ksserver.FAST``) and ``extra``; yields the server, stops it after."""
    from ksserver import FAST, start_server, stop_server

    server = start_server(name, root / "models", root, *FAST, *extra)
    yield server
    stop_server(server)


def _two_head():
    import torch

    class TwoHead(torch.nn.Module):
        """FP32 features and INT64 token ids in; FP32 scores and an INT64 label out."""

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, 8)
            self.fc1 = torch.nn.Linear(16 + 8, 32)
            self.fc2 = torch.nn.Linear(32, 5)

        def forward(self, x, ids):
            h = torch.relu(self.fc1(torch.cat([x, self.emb(ids).mean(1)], 1)))
            scores = self.fc2(h)
            return scores, scores.argmax(1)

    torch.manual_seed(7)
    return TwoHead().eval()


def write_two_head_onnx(out_dir: Path) -> Path:
    """``model.onnx``: inputs x [B,16] FP32, ids [B,4] INT64; outputs scores [B,5], label [B]."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    model = _two_head()
    x, ids = torch.randn(2, 16), torch.randint(0, VOCAB, (2, 4))
    path = out_dir / "model.onnx"
    torch.onnx.export(model, (x, ids), str(path), input_names=["x", "ids"],
                      output_names=["scores", "label"], dynamo=False,
                      dynamic_axes={"x": {0: "batch"}, "ids": {0: "batch"},
                                    "scores": {0: "batch"}, "label": {0: "batch"}})
    return path


def mlp():
    import torch

    torch.manual_seed(11)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4)).eval()


def write_mlp_torchscript(out_dir: Path) -> Path:
    """``model.pt``: a TorchScript MLP, x [B,16] FP32 -> [B,4] FP32."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pt"
    torch.jit.trace(mlp(), torch.randn(2, 16)).save(str(path))
    return path


def write_uncompilable_torchscript(out_dir: Path) -> Path:
    """``model.pt``: TorchScript with ops no backend here converts (i0e, digamma)."""
    import torch

    class Special(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 4)

        def forward(self, x):
            y = self.fc(x)
            return torch.special.i0e(y) + torch.digamma(y.abs() + 1.0)

    torch.manual_seed(5)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pt"
    torch.jit.script(Special().eval()).save(str(path))
    return path


# -- the pretrained all-MiniLM-L6-v2 over its sequence length --------------------------------
MINILM_SPECS = ["input_ids:-1xseq=1..256:int64", "attention_mask:-1xseq=1..256:int64"]


def minilm():
    """The pretrained all-MiniLM-L6-v2 encoder (``benchmarks.zoo``) and its tokenizer."""
    import os
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks import zoo

    model, tok, _ = zoo.minilm(seq_len=16, batch=2)
    return model, tok


def write_minilm_torchscript(out_dir: Path, model, tok) -> Path:
    """``model.pt`` (traced at batch 2, sequence 16), ``examples.npz`` (real sentences padded
    to the longest of them) and ``yellowstone.yaml`` naming ``seq`` with the range 1..256."""
    import numpy as np
    import torch
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    enc = tok(["A man is playing a guitar on stage.", "Shares dropped at the opening bell.",
               "The committee postponed its vote until next week.", "How do I reset it?"],
              padding=True, return_tensors="np")
    examples = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    np.savez(out_dir / "examples.npz", **examples)
    trace_at = {k: torch.from_numpy(v[:2]) for k, v in examples.items()}
    path = out_dir / "model.pt"
    torch.jit.trace(model, (trace_at["input_ids"], trace_at["attention_mask"])).save(str(path))
    (out_dir / "yellowstone.yaml").write_text(yaml.safe_dump(
        {"inputs": MINILM_SPECS, "examples": "examples.npz", "task": "embedding"}))
    return path
