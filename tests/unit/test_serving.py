"""The serving layer: config sections, boost flags, input specs, thread plans, statuses, telemetry."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests.error_table import ERROR_CASES, ERROR_IDS
from yellowstone import metrics
from yellowstone.cli import build_parser
from yellowstone.config import kill_switch
from yellowstone.errors import ConfigError
from yellowstone.serving import (
    add_boost_flags,
    boost_config,
    boost_flags,
    example_feeds,
    parse_specs,
    plan_threads,
    prometheus_text,
    split_section,
    status_of,
)
from yellowstone.serving.telemetry import MetricsBridge


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_PRECISION",
                "YELLOWSTONE_TIME_BUDGET_S"):
        monkeypatch.delenv(var, raising=False)


def test_split_section_normalises_once_and_validates():
    sec = split_section({"handler": "h.py", "time-budget-s": 0.5, "backends": "openvino"},
                        ("handler",), where="model-config.yaml")
    assert dict(sec.plugin) == {"handler": "h.py"}
    assert dict(sec.boost) == {"time_budget_s": 0.5, "backends": "openvino"}
    with pytest.raises(ConfigError) as exc:
        split_section({"time_budget": 1}, ("handler",), where="model-config.yaml")
    text = str(exc.value)
    assert "model-config.yaml" in text and "time_budget_s" in text and "handler" in text
    with pytest.raises(ConfigError):
        split_section(["not", "a", "mapping"], (), where="x")
    assert split_section(None, (), where="x").boost == {}


def test_boost_config_precedence_flags_section_env(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_PRECISION", "bf16")
    monkeypatch.setenv("YELLOWSTONE_TIME_BUDGET_S", "3")
    cfg = boost_config(section={"time_budget_s": 2})
    assert cfg.precision == "bf16" and cfg.time_budget_s == 2
    cfg = boost_config(flags={"time_budget_s": 1, "precision": None}, section={"time_budget_s": 2})
    assert cfg.time_budget_s == 1 and cfg.precision == "bf16"


@pytest.mark.parametrize("value", ["native", "NATIVE", " Native "])
def test_kill_switch_any_case(monkeypatch, value):
    monkeypatch.setenv("YELLOWSTONE_BACKEND", value)
    assert kill_switch()
    assert boost_config(flags={"backends": "openvino"}).backends == ("native",)


def test_backends_variable_counts_in_the_cli(monkeypatch):
    """``yellowstone compile`` without --backends honours YELLOWSTONE_BACKENDS (it did not)."""
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "onnxruntime")
    args = build_parser().parse_args(["compile", "m.onnx"])
    assert boost_config(flags=boost_flags(args)).backends == ("onnxruntime",)
    args = build_parser().parse_args(["compile", "m.onnx", "--backends", "openvino"])
    assert boost_config(flags=boost_flags(args)).backends == ("openvino",)


def test_boost_flags_are_spelled_as_the_fields():
    p = argparse.ArgumentParser()
    add_boost_flags(p, exclude=("workers",))
    args = p.parse_args(["--time_budget_s", "0.5", "--precision", "int8", "--batch_sizes", "1,8"])
    assert boost_flags(args) == {"time_budget_s": 0.5, "precision": "int8", "batch_sizes": "1,8"}
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "int3"])
    with pytest.raises(SystemExit):
        p.parse_args(["--workers", "2"])


def test_parse_specs_every_form():
    specs = parse_specs(["ids:-1xseq:int64", {"name": "mask", "shape": [-1, "seq"], "dtype": "int64"},
                         {"shape": "1x3x8x8"}, [2, 4]], where="inputs")
    assert [s.name for s in specs] == ["ids", "mask", "input2", "input3"]
    assert specs[0].shape == (None, "seq") and specs[1].shape == (None, "seq")
    assert specs[2].shape == (1, 3, 8, 8) and specs[3].shape == (2, 4)
    for bad in (["x:1x?"], [{"name": "x"}], [{"shape": [0, 3]}], [{"shape": ["1.5"]}], "x:1x2"):
        with pytest.raises(ConfigError):
            parse_specs(bad, where="inputs")
    assert parse_specs(None, where="inputs") == ()


def test_example_feeds_fresh_and_never_zero():
    specs = parse_specs(["x:2x16", "ids:2x8:int64"], where="t")
    a, b = example_feeds(specs), example_feeds(specs)
    assert a["x"].shape == (2, 16) and a["ids"].dtype == np.int64
    assert a["x"].any() and a["ids"].any() and not np.array_equal(a["x"], b["x"])


def test_thread_plan_splits_cores(monkeypatch):
    from yellowstone import hardware

    monkeypatch.setattr(hardware, "available_cores", lambda *a: 8)
    monkeypatch.setattr(hardware, "affinity_cores", lambda: 8)
    assert plan_threads(4).threads == 2 and plan_threads(4).shared
    assert plan_threads(1).threads == 0 and not plan_threads(1).shared  # backend default
    assert plan_threads(16).threads == 1
    assert plan_threads(2, threads=3).threads == 3
    monkeypatch.setattr(hardware, "available_cores", lambda *a: 2)  # a pod's CPU limit
    assert plan_threads(1).threads == 2


@pytest.mark.parametrize(("exc", "http", "grpc_code"), ERROR_CASES, ids=ERROR_IDS)
def test_status_table(exc, http, grpc_code):
    status = status_of(exc)
    assert (status.http, status.grpc_code) == (http, grpc_code)
    assert status.client_fault == (400 <= http < 500)
    assert str(exc) in status.message


def test_bridge_and_prometheus_text():
    seen = []

    class Bridge(MetricsBridge):
        def record(self, name, value, unit, labels):
            seen.append((name, value, unit, dict(labels)))
            raise RuntimeError("a broken bridge must not break the caller")

    bridge = Bridge().attach()
    try:
        metrics.emit(metrics.FALLBACKS, 1, model="m_text", backend="openvino", reason="runtime")
        metrics.emit(metrics.INFERENCE_MS, 2.5, "ms", model="m_text", backend="openvino")
        metrics.emit(metrics.INFERENCE_MS, 3.5, "ms", model="m_text", backend="openvino")
    finally:
        bridge.detach()
    assert seen[0] == (metrics.FALLBACKS, 1, "count",
                       {"model": "m_text", "backend": "openvino", "reason": "runtime"})
    text = prometheus_text()
    assert "# TYPE yellowstone_fallbacks_total counter" in text
    assert 'yellowstone_fallbacks_total{backend="openvino",model="m_text",reason="runtime"}' in text
    assert 'yellowstone_inference_ms_count{backend="openvino",model="m_text"} 2' in text
    assert 'yellowstone_inference_ms_sum{backend="openvino",model="m_text"} 6' in text
