"""``YELLOWSTONE_*`` in a TorchServe worker acts as in the core: the handler's config path, no server."""

from __future__ import annotations

import pytest

from yellowstone.config import resolve_config
from yellowstone.plugins.torchserve.config import resolve


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_WORKERS",
                "YELLOWSTONE_THREADS", "YELLOWSTONE_BATCH_SIZES"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("value", ["native", "NATIVE", " Native "])
@pytest.mark.parametrize("var", ["YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS"])
def test_kill_switch_in_any_case_wins_over_the_section(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    _, config = resolve({"yellowstone": {"handler": "image_classifier",
                                         "backends": "onnxruntime,openvino"}})
    assert config.backends == ("native",)
    assert config.killed
    assert config.backends == resolve_config({"backends": "onnxruntime"}).backends


def test_backends_from_the_environment(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    _, config = resolve({"yellowstone": {"handler": "image_classifier"}})
    assert config.backends == ("onnxruntime",) == resolve_config().backends


def test_the_section_beats_the_environment(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    monkeypatch.setenv("YELLOWSTONE_TIME_BUDGET_S", "3")
    _, config = resolve({"yellowstone": {"backends": "openvino"}})
    assert config.backends == ("openvino",)
    assert config.time_budget_s == 3.0


def test_kill_switch_through_initialize_never_compiles(monkeypatch, tmp_path):
    """The whole load path: a worker with ``YELLOWSTONE_BACKEND=NATIVE`` serves natively."""
    pytest.importorskip("ts")
    torch = pytest.importorskip("torch")
    import ts
    from ts.context import Context

    from yellowstone.plugins.torchserve.handler import BoostHandler

    monkeypatch.setenv("YELLOWSTONE_BACKEND", "NATIVE")
    torch.jit.trace(torch.nn.Linear(4, 2).eval(), torch.randn(1, 4)).save(str(tmp_path / "m.pt"))
    manifest = {"model": {"modelName": "m", "serializedFile": "m.pt"}}
    ctx = Context("m", str(tmp_path), manifest, 1, None, ts.__version__, True, None,
                  {"minWorkers": 1, "yellowstone": {"input_shape": [1, 4],
                                                    "backends": "onnxruntime", "cache": False}})
    handler = BoostHandler()
    handler.initialize(ctx)
    try:
        assert handler.boost_config.backends == ("native",)
        assert handler.boosted.backend == "native"
        assert not [c.backend for c in handler.boosted.report.candidates
                    if c.backend != "native" and c.compile_s is not None]
    finally:
        handler._bridge.detach()


def test_batch_sizes_from_the_environment_win_over_batch_size(monkeypatch):
    """``batchSize`` only adds a default batch size; ``YELLOWSTONE_BATCH_SIZES`` overrides it."""
    yaml_config = {"batchSize": 8, "yellowstone": {"handler": "image_classifier"}}
    _, config = resolve(yaml_config)
    assert config.batch_sizes == (1, 8)
    monkeypatch.setenv("YELLOWSTONE_BATCH_SIZES", "2,4")
    _, config = resolve(yaml_config, batch_size=8)
    assert config.batch_sizes == (2, 4) == resolve_config().batch_sizes
    _, config = resolve({**yaml_config, "yellowstone": {"batch_sizes": "1,16"}})
    assert config.batch_sizes == (1, 16)  # the section still beats the environment
