"""The error table through the TorchServe boost handler's real request path (no server).

Each error is raised by the boosted model's ``run`` inside ``BoostHandler.handle`` (TorchServe's
BaseHandler preprocess -> inference -> the boosted module), and must come out as the
``PredictionException`` TorchServe answers with the table's HTTP status.
"""

from __future__ import annotations

import logging

import pytest

from tests.error_table import ERROR_CASES, ERROR_IDS

pytest.importorskip("ts", reason="torchserve is not installed (pip install 'yellowstone[torchserve]')")
torch = pytest.importorskip("torch")


class _Metrics:
    """The part of TorchServe's metrics cache handlers call; records what they add."""

    def __init__(self):
        self.added: list[tuple] = []

    def add_time(self, *args, **kwargs):
        self.added.append(("time", args))

    def add_counter(self, *args, **kwargs):
        self.added.append(("counter", args))

    def add_metric(self, *args, **kwargs):
        self.added.append(("metric", args))


def _context(model_dir, section):
    import ts
    from ts.context import Context, RequestProcessor

    manifest = {"model": {"modelName": "m", "serializedFile": "m.pt", "handler": "boost_handler.py"}}
    ctx = Context("m", str(model_dir), manifest, 1, None, ts.__version__, True, _Metrics(),
                  {"minWorkers": 1, "yellowstone": section})
    ctx.request_ids = {0: "req-0"}
    ctx.request_processor = [RequestProcessor({})]
    return ctx


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A BoostHandler over TorchServe's base_handler and a TorchScript MLP, boosted natively."""
    from yellowstone.plugins.torchserve.handler import BoostHandler

    model_dir = tmp_path_factory.mktemp("ts-model")
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    torch.jit.trace(mlp, torch.randn(1, 4)).save(str(model_dir / "m.pt"))
    ctx = _context(model_dir, {"handler": "base_handler", "input_shape": [1, 4],
                               "backends": "native", "cache": False})
    handler = BoostHandler()
    handler.initialize(ctx)
    yield handler, ctx
    handler._bridge.detach()


def test_the_request_path_serves(served):
    handler, ctx = served
    rows = [[0.5, -1.0, 2.0, 0.25]]
    (out,) = handler.handle(rows, ctx)
    want = handler._original(torch.tensor(rows)).tolist()[0]
    assert out == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(("error", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_error_maps_to_the_table_status(served, monkeypatch, caplog, error, http, grpc_code):
    from ts.utils.util import PredictionException

    handler, ctx = served
    calls = []

    def run(feeds):
        calls.append(feeds)
        raise error

    # Serve through the "compiled" path so BoostedModel.__call__ reaches run().
    monkeypatch.setattr(handler.boosted, "_compiled", {None: object()})
    monkeypatch.setattr(handler.boosted, "run", run)
    caplog.set_level(logging.INFO, logger="yellowstone.plugins.torchserve.handler")
    with pytest.raises(PredictionException) as info:
        handler.handle([[0.5, -1.0, 2.0, 0.25]], ctx)
    assert calls, "the boosted model was not called"
    assert info.value.error_code == http
    assert str(error) in info.value.message
    assert info.value.__cause__ is error
    records = [r for r in caplog.records if r.name.endswith("torchserve.handler")]
    assert records, "the error was not logged"
    if http < 500:  # a client's error: brief, no traceback, not ERROR
        assert all(r.levelno < logging.ERROR and r.exc_info is None for r in records)
    else:
        assert any(r.levelno == logging.ERROR and r.exc_info for r in records)
