"""TVM MetaSchedule tuning: records are kept beside the cache, keyed by kernel, and a second
model with the same layers reuses them instead of tuning again; tuned code matches the framework.

Tuning here is slow (MetaSchedule's builder processes take about a minute to build their first
candidates on 2 cores), so the test tunes one kernel with two trials.
"""

from __future__ import annotations

import json

import pytest
import torch

from yellowstone.backends import CompileRequest, get_backend
from yellowstone.model import load_model
from yellowstone.validate import compare

from ..conftest import requires

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def _layer(seed: int) -> torch.nn.Module:
    """One fused kernel (matmul + bias + ReLU): tuning it is the least MetaSchedule can do."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU()).eval()


@requires("tvm")
def test_tuning_records_are_shared_by_kernel(tmp_path):
    backend = get_backend("tvm")
    request = CompileRequest(batch=4, precision="fp32", cache_dir=tmp_path / "cache",
                             options={"tune_trials": 2})
    stats = []
    for i, seed in enumerate((1, 2)):  # same layers, different weights
        handle = load_model(_layer(seed), (torch.randn(2, 32),))
        workdir = tmp_path / f"m{i}"
        workdir.mkdir()
        compiled = backend.compile(handle, request, workdir)
        feeds = handle.random_feeds(batch=4, seed=10 + i)
        assert compare(handle.output_names, handle.run(feeds), compiled.run(feeds), "fp32") == []
        stats.append(json.loads((workdir / "tuning.json").read_text()))
    first, second = stats
    assert first["kernels"] == 1 and first["tuned"] == 1 and first["reused"] == 0
    assert first["trials"] == 2
    # the second model's kernel is in the records: it is not tuned again
    assert second["kernels"] == 1 and second["reused"] == 1
    assert second["tuned"] == 0 and second["trials"] == 0
    assert second["records"] == first["records"]
    records = (tmp_path / "cache" / "tvm-tuning").glob("*/database_tuning_record.json")
    assert sum(len(p.read_text().splitlines()) for p in records) >= 1
