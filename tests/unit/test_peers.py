"""A peer is held to the check yellowstone's own candidates must pass (benchmarks.peers.judge_peer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.peers import judge_peer


def classifier() -> tuple[torch.nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)).eval()
    return model, (torch.rand(1, 3, 4, 4),)


def as_run(fn):
    def run(inputs):
        with torch.no_grad():
            return fn(*inputs)
    return run


def judge(model, run, example, precision: str, task: str = "classification") -> dict:
    timing = {1: example, 8: (torch.rand(8, 3, 4, 4),)}
    return judge_peer(model, run, example, precision, task, [1, 8], timing, seed=3)


def test_a_peer_that_computes_what_the_framework_does_passes() -> None:
    model, example = classifier()
    got = judge(model, as_run(model), example, "bf16")
    assert got["problems"] == []
    # per batch size the timing inputs and 2 random rounds, then 64 more under reduced precision
    assert got["top1_samples"] == (1 + 2 * 1) + (8 + 2 * 8) + 64
    assert got["top1_agreement"] == 1.0 and got["mean_cosine"] == pytest.approx(1.0)


def test_fp32_is_judged_elementwise_on_fewer_samples() -> None:
    model, example = classifier()
    got = judge(model, as_run(model), example, "fp32")
    assert got["problems"] == [] and got["top1_agreement"] is None  # fp32 checks no top-1

    def off(x):
        return model(x) + 0.05  # well inside bf16's tolerance, far outside fp32's
    bad = judge(model, as_run(off), example, "fp32")
    assert bad["problems"] and "max abs err" in bad["problems"][0]


def test_a_peer_whose_classes_flip_is_rejected_with_the_judges_words() -> None:
    model, example = classifier()

    def swaps_top_two(x):
        out = model(x).clone()
        order = out.argsort(1, descending=True)
        rows = torch.arange(out.shape[0])[::3]  # every third sample: top two classes swapped
        first, second = order[rows, 0], order[rows, 1]
        out[rows, first], out[rows, second] = out[rows, second], out[rows, first]
        return out
    got = judge(model, as_run(swaps_top_two), example, "bf16")
    assert got["top1_agreement"] < 0.9
    top1 = [p for p in got["problems"] if p.startswith("output: top-1 agreement")]
    assert len(top1) == 1 and "over 91 samples < 0.9" in top1[0]
    assert "(batch" not in got["problems"][0]  # the pooled verdicts before any one round's


def test_an_embedding_is_judged_by_cosine_not_top1() -> None:
    model, example = classifier()
    rng = np.random.default_rng(0)

    def noisy(x):
        out = model(x)
        return out + torch.from_numpy(rng.normal(0, 5.0, out.shape).astype(np.float32))
    got = judge(model, as_run(noisy), example, "bf16", task="embedding")
    assert got["top1_agreement"] is None
    assert any("mean cosine similarity" in p for p in got["problems"])
