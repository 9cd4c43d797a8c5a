"""Configuration precedence and validation; input specs and random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from yellowstone.config import BoostConfig, resolve_config
from yellowstone.errors import BadRequestError, ConfigError
from yellowstone.spec import TensorSpec, parse_input_spec, random_inputs


def test_from_dict_rejects_unknown_keys_and_lists_valid_ones():
    with pytest.raises(ConfigError) as exc:
        BoostConfig.from_dict({"backend": "tvm"})
    assert "backend" in str(exc.value) and "backends" in str(exc.value)


def test_values_are_validated():
    for bad in ({"precision": "int3"}, {"batch_sizes": "0,2"}, {"time_budget_s": -1},
                {"time_budget_s": "fast"}):
        with pytest.raises(ConfigError):
            BoostConfig.from_dict(bad)
    cfg = BoostConfig.from_dict({"backends": "openvino, tvm", "batch_sizes": "8,1,8",
                                 "dynamic_batch": "false"})
    assert cfg.backends == ("openvino", "tvm") and cfg.batch_sizes == (1, 8)
    assert cfg.dynamic_batch is False


def test_precedence_explicit_over_server_over_env(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_PRECISION", "bf16")
    monkeypatch.setenv("YELLOWSTONE_BACKENDS", "tvm")
    monkeypatch.delenv("YELLOWSTONE_BACKEND", raising=False)
    assert resolve_config().precision == "bf16"
    assert resolve_config({"precision": "fp16"}).precision == "fp16"
    cfg = resolve_config({"precision": "fp16"}, precision="fp32")
    assert cfg.precision == "fp32" and cfg.backends == ("tvm",)


def test_kill_switch_wins(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_BACKEND", "native")
    assert resolve_config({"backends": "openvino"}, backends="tvm").killed


def test_parse_input_spec():
    s = parse_input_spec("pixels:1x3x224x224:float32")
    assert s == TensorSpec(name="pixels", shape=(1, 3, 224, 224), dtype="float32")
    s = parse_input_spec("ids:-1xseq:int64")
    assert s.shape == (None, "seq") and s.dtype == "int64"
    assert parse_input_spec("x:4").dtype == "float32"
    for bad in ("x", "x:1x?", ":1x2"):
        with pytest.raises(ConfigError):
            parse_input_spec(bad)


def test_random_inputs_are_fresh_nonzero_and_in_range():
    specs = [TensorSpec(name="x", shape=(None, 4), dtype="float32"),
             TensorSpec(name="ids", shape=(None, 6), dtype="int64"),
             TensorSpec(name="mask", shape=(None, 6), dtype="bool")]
    like = {"ids": np.array([[3, 40, 7, 9, 2, 5]]), "x": np.random.rand(1, 4).astype("float32")}
    a = random_inputs(specs, batch=3, like=like, seed=1)
    b = random_inputs(specs, batch=3, like=like, seed=2)
    assert a["x"].shape == (3, 4) and a["ids"].shape == (3, 6)
    assert all(v.any() for v in a.values())
    assert not np.array_equal(a["x"], b["x"])
    assert a["ids"].min() >= 2 and a["ids"].max() <= 40
    assert 0.0 <= a["x"].min() and a["x"].max() <= 1.0  # examples in [0, 1] stay there


def test_spec_check():
    spec = TensorSpec(name="x", shape=("batch", 3), dtype="float32")
    spec.check(np.zeros((5, 3), np.float32))
    with pytest.raises(BadRequestError, match="expected shape batchx3"):
        spec.check(np.zeros((5, 4), np.float32))
    with pytest.raises(BadRequestError, match="dtype"):
        spec.check(np.zeros((5, 3), np.int64))


def test_import_is_cheap_and_quiet():
    import subprocess
    import sys

    code = ("import sys, yellowstone; heavy = [m for m in ('torch', 'tensorflow', 'tvm', "
            "'openvino', 'onnxruntime') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_workers_split_the_cores(monkeypatch):
    import yellowstone.hardware as hw

    monkeypatch.setattr(hw, "available_cores", lambda: 8)
    assert BoostConfig(workers=4).effective_threads == 2
    assert BoostConfig(workers=16).effective_threads == 1
    assert BoostConfig(workers=4, threads=3).effective_threads == 3
    assert BoostConfig().effective_threads == 0  # one worker: the backend's own default
    with pytest.raises(ConfigError):
        BoostConfig(workers=0)


@pytest.mark.parametrize("files, want", [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs -> 2 threads
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),  # no limit: the affinity mask decides
    ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_cores_follow_the_pod_cpu_limit(tmp_path, files, want):
    import os

    import yellowstone.hardware as hw

    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert hw._cgroup_cpu_quota(str(tmp_path)) == want
    assert hw.available_cores(str(tmp_path)) == (min(affinity, want) if want else affinity)


def test_a_pod_cpu_limit_sets_threads_even_for_one_worker(monkeypatch):
    import yellowstone.hardware as hw

    monkeypatch.setattr(hw, "available_cores", lambda: 2)  # a 2-CPU limit ...
    monkeypatch.setattr(hw, "affinity_cores", lambda: 64)  # ... on a 64-core node
    assert BoostConfig().effective_threads == 2
    assert BoostConfig(workers=2).effective_threads == 1
    monkeypatch.setattr(hw, "affinity_cores", lambda: 2)  # no limit: the backend's own default
    assert BoostConfig().effective_threads == 0
