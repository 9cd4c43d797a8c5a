"""Interposer settings: boost options through the serving layer, the kill switch through the core."""

from __future__ import annotations

import pytest

from yellowstone.config import BoostConfig, kill_switch
from yellowstone.errors import ConfigError
from yellowstone.interpose import settings_from


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_TIME_BUDGET_S",
                "YELLOWSTONE_BATCH_SIZES", "YELLOWSTONE_CONFIG", "YELLOWSTONE_INTERPOSE_APIS"):
        monkeypatch.delenv(var, raising=False)


def test_precedence_flags_over_file_over_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "yellowstone.yaml"
    cfg.write_text("apis: [torch.jit.load]\ntime-budget-s: 0.5\nbackends: [openvino]\n")
    monkeypatch.setenv("YELLOWSTONE_TIME_BUDGET_S", "2.0")
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    s = settings_from({}, config_file=str(cfg))
    assert [a.name for a in s.apis] == ["torch.jit.load"]
    assert s.boost_config().time_budget_s == 0.5 and s.boost_config().backends == ("openvino",)
    s = settings_from({}, config_file=str(cfg), flags={"time_budget_s": 0.1, "threads": None})
    assert s.boost_config().time_budget_s == 0.1
    assert settings_from({}).boost_config().time_budget_s == 2.0  # environment alone


def test_backends_variable_as_in_the_core(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    assert settings_from({}).boost_config().backends == BoostConfig.from_env().backends == \
        ("onnxruntime",)


def test_kill_switch_any_case_wins_over_file_and_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "yellowstone.json"
    cfg.write_text('{"backends": ["onnxruntime"]}')
    monkeypatch.setenv("YELLOWSTONE_BACKEND", "NATIVE")
    assert kill_switch()
    s = settings_from({}, config_file=str(cfg), flags={"backends": "openvino"})
    assert s.boost_config().backends == ("native",) and s.boost_config().killed


def test_unknown_key_names_the_file_and_the_valid_keys(tmp_path):
    cfg = tmp_path / "yellowstone.yaml"
    cfg.write_text("apis: all\ntime_budget: 3\n")
    with pytest.raises(ConfigError) as info:
        settings_from({}, config_file=str(cfg))
    msg = str(info.value)
    assert str(cfg) in msg and "time_budget" in msg and "time_budget_s" in msg and "apis" in msg


def test_first_call_batch_unless_batch_sizes_configured(tmp_path, monkeypatch):
    assert settings_from({}).boost_config(batch=8).batch_sizes == (8,)
    cfg = tmp_path / "yellowstone.yaml"
    cfg.write_text("batch_sizes: [1, 4]\n")
    assert settings_from({}, config_file=str(cfg)).boost_config(batch=8).batch_sizes == (1, 4)
    monkeypatch.setenv("YELLOWSTONE_BATCH_SIZES", "2,16")
    assert settings_from({}).boost_config(batch=8).batch_sizes == (2, 16)


def test_interposer_variables_select_apis_and_report(tmp_path):
    env = {"YELLOWSTONE_INTERPOSE_APIS": "tf.keras.models.load_model",
           "YELLOWSTONE_INTERPOSE_REPORT": str(tmp_path / "r.json")}
    s = settings_from(env)
    assert [a.name for a in s.apis] == ["keras.models.load_model"]
    assert s.report_path == str(tmp_path / "r.json")
    assert [a.name for a in settings_from(env, apis="torch.load").apis] == ["torch.load"]
