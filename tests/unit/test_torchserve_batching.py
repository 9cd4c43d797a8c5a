"""TorchServe batches through the boost handler, without a server: bad requests fail alone, batch
sizes up to ``batchSize`` are compiled ahead and never recompiled.

The wrapped handler is a user's own ``BaseHandler`` whose ``preprocess`` stacks the rows into one
tensor (``torch.stack``), so a row of the wrong length breaks its whole batch; the model is served
by a fake static-batch backend (one artifact per batch size, like TVM or TensorRT), which beats
the deliberately slow eager model, so requests reach the compiled path and its input checks.
"""

from __future__ import annotations

import json
import logging
import textwrap

import numpy as np
import pytest

pytest.importorskip("ts", reason="torchserve is not installed (pip install 'yellowstone[torchserve]')")
torch = pytest.importorskip("torch")

from yellowstone.backends import register_backend, unregister_backend  # noqa: E402
from yellowstone.backends.base import Availability  # noqa: E402

FEATURES = 16

HANDLER = '''
import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class StackHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") or row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(torch.tensor(body, dtype=torch.float32))
        return torch.stack(rows)

    def postprocess(self, data):
        return data.tolist()
'''

MODEL = '''
import time

import torch


class SlowNet(torch.nn.Module):
    """A linear layer that takes 2 ms in eager mode, so the fake compiled backend wins."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        time.sleep(0.002)
        return self.fc(x)
'''


class _StaticRun:
    """The fake's compiled model: numpy x @ W.T + b, only at the batch size it was built for."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, batch: int | None, runs: list):
        self.weight, self.bias, self.batch, self.runs = weight, bias, batch, runs

    def run(self, feeds):
        (x,) = feeds.values()
        if self.batch is not None and x.shape[0] != self.batch:
            raise RuntimeError(f"built for batch {self.batch}, got {x.shape[0]}")
        self.runs.append(x.shape[0])
        return [x @ self.weight.T + self.bias]


class StaticFake:
    """A static-batch backend (one artifact per batch size) that counts its compiles."""

    name = "static_fake"
    dynamic_batch = False
    cacheable = False
    auto_excluded = ""

    def __init__(self):
        self.compiled: list[int | None] = []
        self.runs: list[int] = []

    def probe(self):
        return Availability(name=self.name, available=True, version="1.0")

    def version(self):
        return "1.0"

    def supports(self, model):
        return None

    def supports_precision(self, precision):
        return None if precision == "fp32" else "fp32 only"

    def compile(self, model, request, workdir):
        self.compiled.append(request.batch)
        return self.load(model, request, workdir)

    def load(self, model, request, workdir):
        fc = model.module.fc
        return _StaticRun(fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy(),
                          request.batch, self.runs)


class _Metrics:
    def add_time(self, *args, **kwargs):
        pass

    def add_counter(self, *args, **kwargs):
        pass

    def add_metric(self, *args, **kwargs):
        pass


def _context(model_dir, batch_size: int):
    import ts
    from ts.context import Context

    manifest = {"model": {"modelName": "stack", "serializedFile": "slow_net.pth",
                          "modelFile": "slow_net.py", "handler": "boost_handler.py"}}
    section = {"handler": "stack_handler.py:StackHandler", "input_shape": [1, FEATURES],
               "backends": StaticFake.name, "cache": False, "time_budget_s": 0.05,
               "validation_rounds": 1}
    return Context("stack", str(model_dir), manifest, batch_size, None, ts.__version__, True,
                   _Metrics(), {"batchSize": batch_size, "maxBatchDelay": 50,
                                "yellowstone": section})


def _batch(ctx, bodies):
    """Point the context at a batch of ``bodies`` (fresh per-request status)."""
    from ts.context import RequestProcessor

    ctx.request_ids = {i: f"req-{i}" for i in range(len(bodies))}
    ctx.request_processor = [RequestProcessor({}) for _ in bodies]
    return [{"body": json.dumps(b).encode() if not isinstance(b, bytes) else b} for b in bodies]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A BoostHandler over the stacking handler, with batchSize 4, served by the static fake."""
    from yellowstone.plugins.torchserve.handler import BoostHandler

    model_dir = tmp_path_factory.mktemp("ts-stack")
    (model_dir / "stack_handler.py").write_text(textwrap.dedent(HANDLER))
    (model_dir / "slow_net.py").write_text(textwrap.dedent(MODEL))
    import sys

    sys.path.insert(0, str(model_dir))  # TorchServe puts the model directory on sys.path
    import slow_net

    torch.manual_seed(0)
    net = slow_net.SlowNet().eval()
    torch.save(net.state_dict(), model_dir / "slow_net.pth")
    fake = StaticFake()
    register_backend(StaticFake.name, fake)
    ctx = _context(model_dir, 4)
    handler = BoostHandler()
    try:
        handler.initialize(ctx)
        yield handler, ctx, fake, net
    finally:
        if handler._bridge is not None:
            handler._bridge.detach()
        unregister_backend(StaticFake.name)
        sys.path.remove(str(model_dir))


def _want(net, row):
    with torch.no_grad():
        return net.fc(torch.tensor([row], dtype=torch.float32)).numpy()[0]


def test_served_by_the_compiled_batch_sizes(served):
    handler, _, fake, _ = served
    assert handler.backend == StaticFake.name, handler.boosted.report.to_dict()
    assert handler.boost_config.batch_sizes == (1, 4)
    assert sorted(fake.compiled) == [1, 4]
    assert {1, 4} <= set(fake.runs)  # every size up to batchSize ran at load (2, 3 padded to 4)


def test_wrong_length_rows_fail_alone_and_every_good_row_is_answered(served, caplog):
    handler, ctx, _, net = served
    rng = np.random.default_rng(3)
    good = rng.standard_normal((6, FEATURES)).astype(np.float32).tolist()
    bad = rng.standard_normal((2, FEATURES - 1)).astype(np.float32).tolist()
    bodies = [good[0], bad[0], good[1], good[2], bad[1], good[3], good[4], good[5]]
    data = _batch(ctx, bodies)
    caplog.set_level(logging.INFO, logger="yellowstone.plugins.torchserve")
    out = handler.handle(data, ctx)
    assert len(out) == len(bodies)
    for i, body in enumerate(bodies):
        code, phrase = ctx.get_response_status(i)
        if len(body) == FEATURES:
            assert code in (None, 200), (i, code, phrase)
            np.testing.assert_allclose(out[i], _want(net, body), rtol=1e-5, atol=1e-5)
        else:
            assert code == 400, (i, code, phrase)
            err = json.loads(out[i])
            assert err["code"] == 400
            assert "BadRequestError" in err["message"] and "shape" in err["message"], err
            assert ctx.get_response_content_type(i) == "application/json"
    assert any("2 request(s) failed alone" in r.getMessage() for r in caplog.records)


def test_a_row_refused_alone_and_rows_that_only_fail_together(served):
    handler, ctx, _, net = served
    rng = np.random.default_rng(4)
    good = rng.standard_normal((2, FEATURES)).astype(np.float32).tolist()
    bodies = [good[0], b"not json at all", [1.0] * (FEATURES + 3), good[1]]
    out = handler.handle(_batch(ctx, bodies), ctx)
    assert ctx.get_response_status(1)[0] == 400
    assert "StackHandler.preprocess rejected the request" in json.loads(out[1])["message"]
    assert ctx.get_response_status(2)[0] == 400
    for i in (0, 3):
        assert ctx.get_response_status(i)[0] in (None, 200)
        np.testing.assert_allclose(out[i], _want(net, bodies[i]), rtol=1e-5, atol=1e-5)


def test_a_single_bad_request_is_still_a_400(served):
    from ts.utils.util import PredictionException

    handler, ctx, _, _ = served
    with pytest.raises(PredictionException) as info:
        handler.handle(_batch(ctx, [[1.0, 2.0]]), ctx)
    assert info.value.error_code == 400


def test_a_row_that_makes_the_model_raise_fails_alone_with_its_status(served, monkeypatch):
    """The framework's own error (a 500) on one row breaks the batch: that row fails alone."""
    handler, ctx, _, net = served
    original = handler.boosted.run

    def poisoned(feeds):
        if any(np.all(r == 0.5) for r in next(iter(feeds.values()))):
            raise RuntimeError("device lost")
        return original(feeds)

    monkeypatch.setattr(handler.boosted, "run", poisoned)
    rng = np.random.default_rng(5)
    bodies = [*rng.standard_normal((3, FEATURES)).astype(np.float32).tolist(), [0.5] * FEATURES]
    out = handler.handle(_batch(ctx, bodies), ctx)
    for i in range(3):
        assert ctx.get_response_status(i)[0] in (None, 200)
        np.testing.assert_allclose(out[i], _want(net, bodies[i]), rtol=1e-5, atol=1e-5)
    assert ctx.get_response_status(3)[0] == 500
    assert "device lost" in json.loads(out[3])["message"]


def test_a_server_fault_on_every_row_fails_each_with_500(served, monkeypatch):
    handler, ctx, _, _ = served

    def broken(feeds):
        raise RuntimeError("device lost")

    monkeypatch.setattr(handler.boosted, "run", broken)
    rng = np.random.default_rng(5)
    bodies = rng.standard_normal((4, FEATURES)).astype(np.float32).tolist()
    out = handler.handle(_batch(ctx, bodies), ctx)
    for i in range(4):
        assert ctx.get_response_status(i)[0] == 500
        assert "device lost" in json.loads(out[i])["message"]


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_every_batch_size_up_to_batchsize_without_recompiling(served, size):
    handler, ctx, fake, net = served
    boosted = handler.boosted
    compiled = list(fake.compiled)
    runs = len(fake.runs)
    rows = np.random.default_rng(10 + size).standard_normal((size, FEATURES)).astype(np.float32)
    out = handler.handle(_batch(ctx, rows.tolist()), ctx)
    for row, got in zip(rows.tolist(), out):
        np.testing.assert_allclose(got, _want(net, row), rtol=1e-5, atol=1e-5)
    assert handler.boosted is boosted  # no second boost
    assert fake.compiled == compiled  # no compile on a new batch size
    assert fake.runs[runs:] == [1 if size == 1 else 4]  # 2 and 3 are padded into the 4 bucket
