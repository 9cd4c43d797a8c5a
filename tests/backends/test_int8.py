"""int8 post-training quantisation with the real backends: the artifacts are really quantised,
their outputs pass the int8 policy on fresh random inputs, and boost picks and reports one.
bf16/fp16 are offered only where the CPU computes them natively."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import CompileRequest, get_backend
from yellowstone.engine import calibration_set
from yellowstone.model import load_model
from yellowstone.validate import OutputError, compare, pooled_problems

from ..conftest import requires
from .models import build

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@pytest.fixture(scope="module")
def cnn():
    model, example = build("cnn")
    return load_model(model, example)


@pytest.fixture(scope="module")
def encoder():
    model, example = build("encoder")
    return load_model(model, example)


def _request(handle, **kw):
    cfg = yellowstone.BoostConfig(precision="int8", calibration_samples=16)
    return CompileRequest(batch=None, precision="int8", calibration=calibration_set(handle, cfg).feeds,
                          **kw)


def _int8_problems(handle, compiled, samples=64, task="auto"):
    """The int8 policy over a fresh random batch, as boost applies it."""
    feeds = handle.random_feeds(batch=samples, seed=int(np.random.default_rng().integers(1e6)))
    errors: dict[str, OutputError] = {}
    problems = compare(handle.output_names, handle.run(feeds), compiled.run(feeds), "int8",
                       task=task, errors=errors)
    return problems + pooled_problems(errors, "int8", task), errors


@requires("onnxruntime")
def test_onnxruntime_static_int8_for_convolutions(cnn, tmp_path):
    import onnx

    compiled = get_backend("onnxruntime").compile(cnn, _request(cnn), tmp_path)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ, calibrated ranges
    problems, errors = _int8_problems(cnn, compiled)
    assert problems == [], problems
    assert errors[cnn.output_names[0]].max_abs_err > 0  # really quantised: not bit-exact


@requires("onnxruntime")
def test_onnxruntime_dynamic_int8_without_convolutions(encoder, tmp_path):
    import onnx

    compiled = get_backend("onnxruntime").compile(encoder, _request(encoder), tmp_path)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops or "DynamicQuantizeMatMul" in ops, ops
    # the encoder outputs a pooled embedding: judged by cosine similarity, as task=embedding
    problems, errors = _int8_problems(encoder, compiled, task="embedding")
    assert problems == [], problems
    assert errors[encoder.output_names[0]].max_abs_err > 0


@requires("openvino")
def test_openvino_nncf_int8(cnn, tmp_path):
    compiled = get_backend("openvino").compile(cnn, _request(cnn), tmp_path)
    ir = (tmp_path / "model.xml").read_text()
    assert 'type="FakeQuantize"' in ir  # NNCF inserted quantisers
    problems, _ = _int8_problems(cnn, compiled)
    assert problems == [], problems


@requires("onnxruntime")
def test_boost_int8_end_to_end(cnn, cache_dir):
    model, example = build("cnn")
    boosted = yellowstone.boost(model, example, backends="onnxruntime,openvino,inductor",
                                precision="int8", cache_dir=cache_dir, time_budget_s=0.2)
    rep = boosted.report
    assert rep.calibration.startswith("synthetic: 32 random samples")
    assert rep.candidate("inductor").status == "unavailable"
    tried = [c for c in rep.candidates if c.backend in ("onnxruntime", "openvino")
             and c.status != "unavailable"]
    assert tried and all(c.mean_cosine is not None for c in tried)
    if boosted.backend != "native":
        x = np.random.default_rng(3).random((4, 3, 16, 16), dtype=np.float32)
        import torch

        ref = model(torch.from_numpy(x)).detach().numpy()
        got = boosted(torch.from_numpy(x)).detach().numpy()
        cos = np.sum(ref * got, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
        assert cos.min() > 0.95


@requires("openvino")
def test_openvino_declines_bf16_without_native_support(monkeypatch):
    from yellowstone import hardware

    backend = get_backend("openvino")
    plain = hardware.Hardware(arch="x86_64", cpu_model="test", cores=2, isa=("avx2", "fma"))
    amx = hardware.Hardware(arch="x86_64", cpu_model="test", cores=2,
                            isa=("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    monkeypatch.setattr(hardware, "detect", lambda: plain)
    assert "no native bf16" in backend.supports_precision("bf16")
    assert "no native fp16" in backend.supports_precision("fp16")
    monkeypatch.setattr(hardware, "detect", lambda: amx)
    assert backend.supports_precision("bf16") is None


@requires("openvino")
def test_openvino_bf16_runs_where_the_cpu_has_it(cnn, tmp_path):
    backend = get_backend("openvino")
    why = backend.supports_precision("bf16")
    if why:
        pytest.skip(why)
    compiled = backend.compile(cnn, CompileRequest(batch=None, precision="bf16"), tmp_path)
    feeds = cnn.random_feeds(batch=8, seed=4)
    assert compare(cnn.output_names, cnn.run(feeds), compiled.run(feeds), "bf16") == []


@requires("torch")
def test_inductor_declines_bf16_without_native_support(monkeypatch):
    from yellowstone import hardware

    backend = get_backend("inductor")
    plain = hardware.Hardware(arch="x86_64", cpu_model="test", cores=2, isa=("avx2", "fma"))
    monkeypatch.setattr(hardware, "detect", lambda: plain)
    assert "no native bf16" in backend.supports_precision("bf16")
    assert "not wired" in backend.supports_precision("int8")


@requires("torch")
def test_inductor_bf16_is_autocast_compiled_in(cnn, tmp_path):
    backend = get_backend("inductor")
    why = backend.supports_precision("bf16") or backend.probe().reason
    if why:
        pytest.skip(why)
    compiled = backend.compile(cnn, CompileRequest(batch=None, precision="bf16"), tmp_path)
    program = cnn.exported_program(dynamic_batch=True, autocast=__import__("torch").bfloat16)
    casts = [n for n in program.graph.nodes
             if "bfloat16" in str(n.kwargs.get("dtype", "")) or "bfloat16" in str(n.args)]
    assert casts, "the exported program carries no bf16 casts"
    feeds = cnn.random_feeds(batch=8, seed=4)
    got = compiled.run(feeds)
    assert all(o.dtype == np.float32 for o in got)
    assert compare(cnn.output_names, cnn.run(feeds), got, "bf16") == []
    fp32 = cnn.run(feeds)[0]
    assert not np.array_equal(got[0], fp32)  # really rounded: bf16 arithmetic, not fp32
