"""KServe's config path without a server: flags > ``yellowstone.yaml`` > ``YELLOWSTONE_*`` >
defaults, the kill switch in any case, and the flags spelled as the serving layer spells them."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from yellowstone.config import BoostConfig, resolve_config  # noqa: E402
from yellowstone.errors import ConfigError  # noqa: E402
from yellowstone.spec import TensorSpec  # noqa: E402


@pytest.fixture
def env(monkeypatch):
    """No YELLOWSTONE_* variable from the caller's shell."""
    import os

    for var in [v for v in os.environ if v.startswith("YELLOWSTONE_")]:
        monkeypatch.delenv(var)
    return monkeypatch


def _model_dir(tmp_path, yaml_text: str | None = None):
    d = tmp_path / "models"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"")  # the layout goes by name; nothing is loaded here
    if yaml_text is not None:
        (d / "yellowstone.yaml").write_text(yaml_text)
    return d


def _config(model_dir, **flags) -> BoostConfig:
    from yellowstone.plugins.kserve.model import BoostModel

    return BoostModel("m", model_dir, options=flags).resolve()[2]


@pytest.mark.parametrize("value", ["native", "NATIVE", " Native "])
def test_kill_switch_in_any_case_wins_over_flags_and_yaml(tmp_path, env, value):
    env.setenv("YELLOWSTONE_BACKEND", value)
    cfg = _config(_model_dir(tmp_path, "backends: openvino\n"), backends="onnxruntime")
    assert cfg.backends == ("native",) and cfg.killed
    # the same config the core resolves, but for a server's default spin_wait
    assert cfg == resolve_config(None, backends="onnxruntime", spin_wait=False) == resolve_config(
        {"backends": "openvino", "spin_wait": False})


def test_backends_variable_acts_as_in_the_core(tmp_path, env):
    env.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    cfg = _config(_model_dir(tmp_path))
    assert cfg.backends == ("onnxruntime",) and not cfg.killed
    assert cfg == resolve_config(spin_wait=False)
    assert dataclasses.replace(BoostConfig.from_env(), spin_wait=False) == cfg


def test_backends_variable_native_is_the_kill_switch(tmp_path, env):
    env.setenv("YELLOWSTONE_BACKENDS", "Native")
    assert _config(_model_dir(tmp_path, "backends: openvino\n")).killed


def test_flags_over_yaml_over_environment(tmp_path, env):
    env.setenv("YELLOWSTONE_TIME_BUDGET_S", "3")
    env.setenv("YELLOWSTONE_VALIDATION_ROUNDS", "4")
    env.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    d = _model_dir(tmp_path, "time-budget-s: 2\nvalidation_rounds: 5\nbatch_sizes: [1, 8]\n")
    cfg = _config(d, time_budget_s=1.0, backends=None)
    assert cfg.time_budget_s == 1.0  # flag
    assert cfg.validation_rounds == 5  # yaml over env
    assert cfg.batch_sizes == (1, 8)
    assert cfg.backends == ("onnxruntime",)  # env; a None flag means "not given"


def test_yaml_plugin_keys_and_specs(tmp_path, env):
    from yellowstone.plugins.kserve.layout import read_options, resolve_layout

    d = _model_dir(tmp_path, "inputs:\n  - x:-1x16:float32\n  - {name: ids, shape: 1x4, "
                             "dtype: int64}\nsignature: serve\ncalibration: calib.npz\n")
    opts = read_options(resolve_layout(d))
    assert opts.inputs == (TensorSpec(name="x", shape=(None, 16)),
                           TensorSpec(name="ids", shape=(1, 4), dtype="int64"))
    assert opts.signature == "serve"
    assert opts.boost == {"calibration": str(d / "calib.npz")}


@pytest.mark.parametrize(("text", "words"), [
    ("no_such_option: 1\n", ["no_such_option", "time_budget_s", "inputs"]),
    ("precision: fp64\n", ["precision"]),
    ("- a\n- b\n", ["mapping"]),
    ("inputs: [{name: x}]\n", ["shape"]),
])
def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path, env, text, words):
    d = _model_dir(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        _config(d)
    for word in [str(d / "yellowstone.yaml"), *words]:
        assert word in str(exc.value)


def test_entry_point_flags_are_the_serving_layers(env):
    from yellowstone.plugins.kserve.__main__ import boost_options, build_parser

    args = build_parser().parse_args([
        "--model_name", "m", "--model_dir", "/mnt/models", "--time_budget_s", "0.5",
        "--batch_sizes", "1,8", "--validation_rounds", "2", "--dynamic_batch", "false",
        "--cache", "false", "--max_runtime_failures", "3", "--workers", "2",
        "--input", "x:-1x16", "--calibration_samples", "64"])
    assert boost_options(args) == {
        "time_budget_s": 0.5, "batch_sizes": "1,8", "validation_rounds": 2,
        "dynamic_batch": "false", "cache": "false", "max_runtime_failures": 3, "workers": 2,
        "calibration_samples": 64}
    assert args.inputs == ["x:-1x16"]
    cfg = resolve_config(None, **boost_options(args))
    assert (cfg.workers, cfg.dynamic_batch, cfg.cache) == (2, False, False)
    one = build_parser().parse_args(["--model_name", "m", "--model_dir", "/mnt/models"])
    assert boost_options(one) == {}  # KServe's default --workers 1 leaves yaml/env alone
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model_name", "m", "--model_dir", "d", "--precision", "fp64"])
