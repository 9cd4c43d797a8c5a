"""The TF Serving server reads boost options as the core does: env, flags, kill switch, defaults.

Only the server's configuration path runs (``ModelServer`` loads nothing until ``start``), so
no TensorFlow model is needed.
"""

from __future__ import annotations

import pytest

from yellowstone.config import BoostConfig, kill_switch
from yellowstone.plugins.tfserving.artifacts import shim_plan
from yellowstone.plugins.tfserving.server import ModelServer, build_parser


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No YELLOWSTONE_* from the outer environment; returns monkeypatch."""
    import os

    for var in list(os.environ):
        if var.startswith("YELLOWSTONE_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("YELLOWSTONE_CACHE_DIR", str(tmp_path / "cache"))
    return monkeypatch


def _server(*flags: str) -> ModelServer:
    return ModelServer(build_parser().parse_args(["--model_name=m", "--model_base_path=/nonexistent",
                                                  *flags]))


@pytest.mark.parametrize("value", ["NATIVE", "native", " Native "])
@pytest.mark.parametrize("var", ["YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS"])
def test_kill_switch_any_case_turns_the_shim_and_boosting_off(env, var, value):
    env.setenv(var, value)
    server = _server("--yellowstone_shim=always", "--backends=openvino")
    assert kill_switch()
    assert server.shim_policy == "off"
    assert server.boost_config.killed and BoostConfig.from_env().killed
    for policy in ("always", "auto"):
        assert shim_plan(policy, server.boost_config) == ((), (), "boosting is off (backends=native)")


def test_backends_from_env_as_in_the_core(env):
    env.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    server = _server()
    assert server.shim_policy == "auto"  # the default: a C path serves only where it beats TensorFlow
    assert server.boost_config.backends == BoostConfig.from_env().backends == ("onnxruntime",)
    for policy in ("always", "auto"):  # only the C path the user left in is tried
        assert shim_plan(policy, server.boost_config) == (("onnxruntime",), ("onnxruntime",), "")
    env.setenv("YELLOWSTONE_BACKENDS", "tvm")
    boost_with, paths, why = shim_plan("auto", _server().boost_config)
    assert boost_with == paths == () and "leaves out openvino and onnxruntime" in why


def test_backend_singular_env_any_case(env):
    env.setenv("YELLOWSTONE_BACKEND", "OpenVINO")
    assert _server().boost_config.backends == ("openvino",)


def test_policies_pick_the_candidates(env):
    env.setenv("YELLOWSTONE_BACKENDS", "onnxruntime,openvino")
    cfg = _server().boost_config
    both = ("openvino", "onnxruntime")
    assert shim_plan("always", cfg) == (both, both, "")  # the C paths only
    assert shim_plan("auto", cfg) == (("onnxruntime", "openvino"), both, "")  # the configured candidates
    assert shim_plan("off", cfg) == ((), (), "the shim is off")
    assert shim_plan("auto", BoostConfig()) == (("auto",), both, "")
    assert _server("--yellowstone_shim=always").shim_policy == "always"


def test_flags_beat_env_and_use_the_field_names(env):
    env.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    env.setenv("YELLOWSTONE_PRECISION", "bf16")
    cfg = _server("--backends=openvino,tvm", "--precision=fp32", "--validation_rounds=3").boost_config
    assert cfg.backends == ("openvino", "tvm")
    assert (cfg.precision, cfg.validation_rounds) == ("fp32", 3)


def test_time_budget_default_is_small_and_overridable(env):
    assert _server().boost_config.time_budget_s == 0.2
    env.setenv("YELLOWSTONE_TIME_BUDGET_S", "3")
    assert _server().boost_config.time_budget_s == 3.0
    assert _server("--time_budget_s=5").boost_config.time_budget_s == 5.0
    with pytest.raises(SystemExit):  # the old spelling is gone
        build_parser().parse_args(["--yellowstone_time_budget_s=1"])


def test_tf_serving_flags_keep_their_names(env):
    args = build_parser().parse_args([
        "--port=9000", "--rest_api_port=9001", "--model_name=m", "--model_base_path=/nonexistent",
        "--tensorflow_intra_op_parallelism=3", "--enable_batching=true"])
    assert (args.port, args.rest_api_port, args.model_name) == (9000, 9001, "m")
    server = ModelServer(args)
    assert server.boost_config.threads == 3
    assert _server("--tensorflow_intra_op_parallelism=3", "--threads=1").boost_config.threads == 1


def test_cache_dir_from_env(env, tmp_path):
    assert _server().boost_config.cache_dir == tmp_path / "cache"
    assert _server(f"--cache_dir={tmp_path / 'x'}").boost_config.cache_dir == tmp_path / "x"
