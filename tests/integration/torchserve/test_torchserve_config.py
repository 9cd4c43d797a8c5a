"""The ``yellowstone:`` section and handler resolution, without a server (fast)."""

from __future__ import annotations

import pytest

from yellowstone.errors import ConfigError
from yellowstone.plugins.torchserve.config import parse_section
from yellowstone.plugins.torchserve.handler import load_handler_class


def test_section_splits_plugin_keys_from_boost_options():
    cfg = parse_section({"handler": "my_handler.py:Mine", "input_shape": "1x3x32x32",
                         "backends": "onnxruntime", "time-budget-s": 0.1,
                         "artifact_dir": "arts"})
    assert cfg.handler == "my_handler.py:Mine"
    assert cfg.inputs[0].shape == (1, 3, 32, 32) and cfg.inputs[0].dtype == "float32"
    assert cfg.artifact_dir == "arts"
    assert dict(cfg.boost) == {"backends": "onnxruntime", "time_budget_s": 0.1}


def test_unknown_key_is_rejected_with_the_valid_options():
    with pytest.raises(ConfigError) as info:
        parse_section({"handler": "image_classifier", "backend": "openvino"})
    msg = str(info.value)
    assert "unknown option(s) backend" in msg and "batch_sizes" in msg and "input_shape" in msg


@pytest.mark.parametrize("bad", [{"input_shape": [1, 0, 3]}, {"precision": "int3"},
                                 {"inputs": "x"}, {"input_shape": [1], "inputs": []}])
def test_bad_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        parse_section(bad)


def test_builtin_and_unknown_handlers():
    pytest.importorskip("ts")
    assert load_handler_class("image_classifier").__name__ == "ImageClassifier"
    assert load_handler_class("base_handler").__name__ == "BaseHandler"
    with pytest.raises(ConfigError, match="no module 'nope_handler'"):
        load_handler_class("nope_handler.py")
