"""The ``yellowstone`` command: doctor, compile (with --out and the cache), bench --plot, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import requires


def ys(*args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "yellowstone", *args], capture_output=True,
                          text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def test_doctor_json_contract():
    info = json.loads(ys("doctor", "--json").stdout)
    assert set(info) == {"hardware", "backends"}
    assert {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"} <= set(info["hardware"]["isa"])
    names = {b["name"] for b in info["backends"]}
    assert {"native", "onnxruntime", "openvino", "tvm", "inductor", "tensorrt"} <= names
    for b in info["backends"]:
        assert set(b) == {"name", "available", "version", "devices", "reason"}
        if not b["available"]:
            assert b["reason"]


def test_doctor_table():
    out = ys("doctor").stdout
    assert "CPU" in out and "onnxruntime" in out and "tensorrt" in out


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    import torch

    from ..backends.models import build

    model, example = build("mlp")
    path = tmp_path_factory.mktemp("m") / "mlp.pt"
    torch.jit.trace(model, example).save(str(path))
    return path


@requires("onnxruntime")
def test_compile_out_then_cache_hit(torchscript_file, tmp_path, monkeypatch):
    env = dict(__import__("os").environ, YELLOWSTONE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("YELLOWSTONE_BACKEND", None)
    args = ["compile", str(torchscript_file), "--input", "x:-1x32:float32",
            "--backends", "onnxruntime,openvino", "--time_budget_s", "0.05", "--json"]
    first = json.loads(ys(*args, "--out", str(tmp_path / "art"), env=env).stdout)
    assert first["cache"] == "miss" and first["chosen"] in ("native", "onnxruntime", "openvino")
    statuses = {c["backend"]: c["status"] for c in first["candidates"]}
    assert set(statuses) == {"native", "onnxruntime", "openvino"}
    assert (tmp_path / "art" / "yellowstone.json").exists()
    second = json.loads(ys(*args, env=env).stdout)
    assert second["cache"] == "hit" and second["chosen"] == first["chosen"]


@requires("onnxruntime")
def test_bench_table_and_plot(torchscript_file, tmp_path):
    plot = tmp_path / "bench.png"
    proc = ys("bench", str(torchscript_file), "--input", "x:-1x32", "--backends",
              "onnxruntime", "--batch_sizes", "1,4", "--time_budget_s", "0.05", "--cache", "false",
              "--plot", str(plot))
    assert "p50 ms b1" in proc.stdout and "p50 ms b4" in proc.stdout
    assert "onnxruntime" in proc.stdout
    assert "compiling" in proc.stderr  # progress output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_clear(tmp_path):
    proc = ys("compile", str(tmp_path / "missing.onnx"), check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    proc = ys("compile", str(bad), check=False)
    assert proc.returncode == 1 and "cannot read ONNX file" in proc.stderr
    proc = ys("compile", str(bad), "--input", "x:1x?", check=False)
    assert proc.returncode == 1 and "bad dimension" in proc.stderr
    proc = ys("compile", str(bad), "--backends", "nosuch", check=False)
    assert proc.returncode == 1
