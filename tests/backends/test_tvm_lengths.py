"""TVM serves a dynamic sequence length through length buckets: one static build per bucket,
requests zero-padded up to the nearest one (the padding mask says so) and outputs cut back."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import CompileRequest, get_backend
from yellowstone.backends.lengths import read_plan
from yellowstone.errors import BadRequestError
from yellowstone.model import load_model
from yellowstone.serving import parse_specs

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.tvm]
SPECS = ["ids:-1xseq=1..24:int64", "mask:-1xseq:int64"]


def _model():
    torch = pytest.importorskip("torch")

    class MaskedEncoder(torch.nn.Module):
        """Token states and their masked mean: one output follows the length, one does not."""

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 8)
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, ids, mask):
            h = torch.tanh(self.lin(self.emb(ids)))
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9), h

    torch.manual_seed(0)
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.int64)
    mask[1, 4:] = 0
    return MaskedEncoder().eval(), (ids, mask)


def _tvm():
    backend = get_backend("tvm")
    avail = backend.probe()
    if not avail.available:
        pytest.skip(f"tvm: {avail.reason}")
    return backend


def _reference(model, feeds):
    import torch

    with torch.inference_mode():
        return [t.numpy() for t in model(*(torch.from_numpy(feeds[k]) for k in ("ids", "mask")))]


def test_length_buckets_match_the_framework_at_every_length(tmp_path):
    model, example = _model()
    handle = load_model(model, example, input_specs=parse_specs(SPECS, where="test"))
    compiled = _tvm().compile(handle, CompileRequest(batch=2, precision="fp32"), tmp_path)
    plan = read_plan(tmp_path)
    assert plan["sizes"] == [8, 16, 24] and plan["output_axes"] == [[], [1]]
    assert set(plan["p50_ms"]) == {"8", "16", "24"}  # each bucket timed at its length
    for n in (1, 7, 8, 13, 24):
        feeds = handle.random_feeds(batch=2, seed=n, dims={"seq": n})
        pooled, states = compiled.run(feeds)
        ref_pooled, ref_states = _reference(model, feeds)
        assert states.shape == (2, n, 8), n  # cut back to the request's length
        np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5, err_msg=f"seq {n}")
        mask = feeds["mask"].astype(bool)  # padded positions of the request itself are noise
        np.testing.assert_allclose(states[mask], ref_states[mask], atol=1e-5, err_msg=f"seq {n}")


def test_boost_validates_the_buckets_and_refuses_beyond_the_range(tmp_path):
    model, example = _model()
    handle = load_model(model, example, input_specs=parse_specs(SPECS, where="test"))
    _tvm()
    boosted = yellowstone.boost(handle, backends="tvm", batch_sizes=(1,), validation_rounds=1,
                                time_budget_s=0.05, cache_dir=str(tmp_path))
    # Validated over the range through the buckets (native may still be faster on a toy).
    assert boosted.report.candidate("tvm").status in ("ok", "chosen"), boosted.report.table()
    feeds = handle.random_feeds(batch=1, seed=5, dims={"seq": 11})
    np.testing.assert_allclose(boosted.run(feeds)[0], _reference(model, feeds)[0], atol=1e-5)
    with pytest.raises(BadRequestError, match=r"outside 1\.\.24"):
        boosted.run(handle.random_feeds(batch=1, seed=0, dims={"seq": 25}))


def test_unmasked_dims_are_declined_with_the_reason():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1)).eval()
    handle = load_model(conv, (torch.rand(1, 3, 20, 20),),
                        input_specs=parse_specs(["x:-1x3xh=8..32x20"], where="test"))
    why = _tvm().supports(handle)
    assert why and "carries no padding mask" in why and "h" in why


def test_a_model_that_ignores_its_mask_is_rejected_not_padded_wrong(tmp_path):
    """Padding is only as correct as the model's use of its mask: validation over the range
    finds a model whose output changes with padding, and TVM is not served."""
    torch = pytest.importorskip("torch")
    model, example = _model()

    class IgnoresMask(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, ids, mask):
            states = self.inner(ids, mask)[1]
            return states.mean(1) + 0 * mask.sum(1, keepdim=True)  # every position counts

    handle = load_model(IgnoresMask().eval(), example,
                        input_specs=parse_specs(SPECS, where="test"))
    _tvm()
    boosted = yellowstone.boost(handle, backends="tvm", batch_sizes=(1,), validation_rounds=1,
                                time_budget_s=0.05, cache_dir=str(tmp_path))
    tvm = boosted.report.candidate("tvm")
    assert tvm.status == "rejected", boosted.report.table()
    assert boosted.report.chosen == "native"
