"""The TorchServe plugin's codec pieces without a server: the ``yellowstone:`` section, input
specs, worker and batch options, handler resolution, example inputs and the metrics bridge."""

from __future__ import annotations

import numpy as np
import pytest

from yellowstone import metrics
from yellowstone.errors import ConfigError
from yellowstone.plugins.torchserve.config import PLUGIN_KEYS, parse_section, resolve
from yellowstone.spec import TensorSpec

from .fakes import TorchServeContext


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_WORKERS",
                "YELLOWSTONE_THREADS", "YELLOWSTONE_BATCH_SIZES"):
        monkeypatch.delenv(var, raising=False)


def test_section_splits_plugin_keys_from_boost_options():
    cfg = parse_section({"handler": "my_handler.py:Mine", "input-shape": "1x3x32x32",
                         "backends": "onnxruntime", "time-budget-s": 0.1,
                         "artifact_dir": "arts"})
    assert cfg.handler == "my_handler.py:Mine"
    assert cfg.inputs == (TensorSpec(name="input0", shape=(1, 3, 32, 32)),)
    assert cfg.artifact_dir == "arts"
    assert dict(cfg.boost) == {"backends": "onnxruntime", "time_budget_s": 0.1}


def test_empty_section_defaults():
    for section in (None, {}):
        cfg = parse_section(section)
        assert (cfg.handler, cfg.inputs, cfg.artifact_dir, dict(cfg.boost)) == \
            ("base_handler", (), None, {})


def test_unknown_key_is_rejected_naming_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        parse_section({"handler": "image_classifier", "backend": "openvino"})
    msg = str(info.value)
    assert "model-config.yaml 'yellowstone' section" in msg
    assert "unknown option(s) backend" in msg
    assert "batch_sizes" in msg and "time_budget_s" in msg  # the boost options
    assert all(key in msg for key in PLUGIN_KEYS)  # and the plugin's keys


@pytest.mark.parametrize("bad", [
    {"input_shape": [1, 0, 3]}, {"input_shape": "1xfooo-3"}, {"precision": "int3"},
    {"inputs": "x"}, {"inputs": [{"name": "x"}]}, {"inputs": [42]},
    {"input_shape": [1], "inputs": []}, {"input_dtype": "int64"},
    {"input_shape": [1, 4], "input_dtype": "complexish"}, {"time_budget_s": "soon"},
], ids=str)
def test_bad_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        parse_section(bad)


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_section(["backends", "onnxruntime"])


def test_input_shape_and_dtype_are_one_spec():
    cfg = parse_section({"input_shape": [2, 128], "input_dtype": "int64"})
    assert cfg.inputs == (TensorSpec(name="input0", shape=(2, 128), dtype="int64"),)
    assert parse_section({"input_shape": [-1, 16]}).inputs[0].shape == (None, 16)


def test_inputs_in_every_form():
    cfg = parse_section({"inputs": [
        "input_ids:1x-1:int64",
        {"name": "attention_mask", "shape": [1, "seq"], "dtype": "int64"},
        {"shape": "1x8"},
        [1, 3],
    ]})
    assert cfg.inputs == (
        TensorSpec(name="input_ids", shape=(1, None), dtype="int64"),
        TensorSpec(name="attention_mask", shape=(1, "seq"), dtype="int64"),
        TensorSpec(name="input2", shape=(1, 8)),
        TensorSpec(name="input3", shape=(1, 3)),
    )


def test_batch_sizes_and_workers_from_torchserve_keys():
    _, cfg = resolve({"batchSize": 8, "minWorkers": 3, "yellowstone": {}})
    assert cfg.batch_sizes == (1, 8) and cfg.workers == 3
    _, cfg = resolve({"batchSize": 8, "yellowstone": {}}, batch_size=4)  # the worker's own wins
    assert cfg.batch_sizes == (1, 4)
    _, cfg = resolve({"batchSize": 8, "minWorkers": 3,
                      "yellowstone": {"batch_sizes": "2", "workers": 1}})
    assert cfg.batch_sizes == (2,) and cfg.workers == 1


def test_workers_default_to_torchserve_s_one_per_core(monkeypatch):
    from yellowstone import hardware

    monkeypatch.setattr(hardware, "available_cores", lambda *a, **k: 6)
    assert resolve(None)[1].workers == 6
    monkeypatch.setenv("YELLOWSTONE_WORKERS", "2")
    assert resolve(None)[1].workers == 2
    assert resolve({"minWorkers": 3})[1].workers == 3


@pytest.mark.parametrize("bad", [{"minWorkers": "many"}, {"batchSize": "big"}])
def test_bad_torchserve_keys_are_config_errors(bad):
    with pytest.raises(ConfigError):
        resolve(bad)


def test_builtin_and_unknown_handlers():
    pytest.importorskip("ts")
    from yellowstone.plugins.torchserve.handler import load_handler_class

    assert load_handler_class("image_classifier").__name__ == "ImageClassifier"
    assert load_handler_class("base_handler").__name__ == "BaseHandler"
    with pytest.raises(ConfigError, match="no module 'nope_handler'"):
        load_handler_class("nope_handler.py")


@pytest.mark.parametrize("form", ["onnx", "nn.Module"])
def test_example_inputs_are_fresh_random(form):
    from yellowstone.plugins.torchserve.handler import BoostHandler

    if form != "onnx":
        pytest.importorskip("torch")
    handler = BoostHandler()
    handler.settings = parse_section({"inputs": ["x:2x5", "ids:2x7:int64"]})
    handler._form = form
    first, second = handler._example_inputs(), handler._example_inputs()
    for a, b, shape, dtype in zip(first, second, [(2, 5), (2, 7)], ["float32", "int64"]):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == shape and a.dtype == dtype
        assert a.any() and b.any()  # never all-zero
    assert not np.array_equal(np.asarray(first[0]), np.asarray(second[0]))  # fresh each time
    if form == "onnx":
        assert all(isinstance(a, np.ndarray) for a in first)
    else:
        import torch

        assert all(isinstance(a, torch.Tensor) for a in first)


def test_metrics_bridge_writes_torchserve_names_and_dimensions():
    pytest.importorskip("ts")
    from yellowstone.plugins.torchserve.metrics import TorchServeMetrics

    ctx, backend = TorchServeContext(), ["pending"]
    bridge = TorchServeMetrics(lambda: ctx, lambda: backend[0]).attach()
    try:
        metrics.emit(metrics.COMPILE_SECONDS, 1.5, "s", model="m")  # before the boost returns
        assert ctx.metrics.calls == []
        backend[0] = "openvino"
        bridge.flush()
        metrics.emit(metrics.FALLBACKS, 1, model="m", backend="tvm", reason="compile")
        metrics.emit(metrics.INFERENCE_MS, 2.0, "ms", model="m", backend="openvino")
        metrics.emit(metrics.BACKEND_IN_USE, 0, "gauge", model="m", backend="tvm")  # a gauge's 0 too
        metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model="m", backend="openvino")
        metrics.emit(metrics.RECOVERIES, 1, model="m", backend="openvino")
        metrics.emit(metrics.CACHE_DISCARDS, 1, reason="manifest")  # no backend: none added
        metrics.emit("yellowstone_something_else", 1, kind="x")  # a plugin's own: named alike
    finally:
        bridge.detach()
    metrics.emit(metrics.INFERENCE_MS, 3.0, "ms", model="m", backend="openvino")  # detached
    assert ctx.metrics.calls == [
        ("time", "YellowstoneCompileTime", 1.5, {"Backend": "openvino"}, "s"),
        ("counter", "YellowstoneFallbacks", 1, {"Backend": "tvm", "Reason": "compile"}),
        ("time", "YellowstoneInferenceTime", 2.0, {"Backend": "openvino"}, "ms"),
        ("gauge", "YellowstoneBackendInUse", 0, {"Backend": "tvm"}),
        ("gauge", "YellowstoneBackendInUse", 1, {"Backend": "openvino"}),
        ("counter", "YellowstoneRecoveries", 1, {"Backend": "openvino"}),
        ("counter", "YellowstoneCacheDiscards", 1, {"Reason": "manifest"}),
        ("counter", "YellowstoneSomethingElse", 1, {"Kind": "x"}),
    ]


def test_metrics_bridge_never_breaks_serving():
    from yellowstone.plugins.torchserve.metrics import TorchServeMetrics

    def boom():
        raise RuntimeError("no context")

    bridge = TorchServeMetrics(boom, lambda: "openvino").attach()
    try:
        metrics.emit(metrics.INFERENCE_MS, 2.0, "ms", model="m", backend="openvino")
    finally:
        bridge.detach()
