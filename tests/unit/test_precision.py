"""Reduced-precision policy: the accuracy measures per precision and task, calibration sets,
and how the engine offers a precision only to backends that can run it (fake backends)."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import register_backend, unregister_backend
from yellowstone.errors import ConfigError
from yellowstone.spec import TensorSpec, random_inputs
from yellowstone.validate import OutputError, compare, pooled_problems

from .fakes import FakeBackend, NumpyModel

FAST = dict(time_budget_s=0.05, validation_rounds=1)


def _logits(n=200, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, classes)) * 3).astype(np.float32)


def _judge(ref, got, precision, task="auto"):
    errors: dict[str, OutputError] = {}
    problems = compare(["y"], [ref], [got], precision, task=task, errors=errors)
    return problems + pooled_problems(errors, precision, task), errors["y"]


def test_int8_accepts_small_relative_error_that_fp32_rejects():
    ref = _logits()
    got = ref + np.random.default_rng(1).normal(0, 0.05, ref.shape).astype(np.float32)
    assert _judge(ref, got, "fp32")[0]  # 0.05 absolute error is far past fp32's 1e-4
    problems, err = _judge(ref, got, "int8")
    assert problems == []
    assert err.top1_agreement > 0.9 and err.mean_cosine > 0.99


def test_int8_rejects_a_classifier_whose_top1_moves():
    ref = _logits()
    got = ref.copy()
    flip = np.arange(0, 200, 5)  # every fifth sample: the runner-up wins (20% disagree)
    order = np.argsort(ref[flip], axis=1)
    got[flip, order[:, -2]] = ref[flip, order[:, -1]] + 0.5
    problems, err = _judge(ref, got, "int8")
    assert err.top1_agreement == pytest.approx(0.8)
    assert any("top-1 agreement 0.800 over 200 samples < 0.9" in p for p in problems)
    # the same outputs as embeddings: top-1 is not their measure, cosine still is
    problems, _ = _judge(ref, got, "int8", task="embedding")
    assert not any("top-1" in p for p in problems)


def test_int8_embedding_judged_on_mean_cosine():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((64, 16)).astype(np.float32)
    close = ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32)
    far = ref + 0.6 * rng.standard_normal(ref.shape).astype(np.float32)
    assert _judge(ref, close, "int8", "embedding")[0] == []
    problems, err = _judge(ref, far, "int8", "embedding")
    assert err.mean_cosine < 0.98
    assert any("mean cosine similarity" in p for p in problems)


def test_int8_regression_keeps_an_error_bound():
    ref = np.linspace(1, 10, 50, dtype=np.float32).reshape(50, 1)
    got = ref * 1.1  # cosine of 1-wide rows is 1, and there is no top-1: only the bound catches it
    problems, _ = _judge(ref, got, "int8", "regression")
    assert any("max abs err" in p for p in problems)
    assert _judge(ref, ref * 1.01, "int8", "regression")[0] == []


def test_padding_masks_stay_padding_masks():
    example = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=np.int64)
    specs = [TensorSpec(name="mask", shape=(None, 5), dtype="int64")]
    mask = random_inputs(specs, batch=64, like={"mask": example}, seed=0)["mask"]
    assert mask.shape == (64, 5) and mask[:, 0].all()
    assert (np.diff(mask, axis=1) <= 0).all()  # ones, then zeros
    assert len(set(mask.sum(axis=1))) > 1  # random lengths
    ids = random_inputs(specs, batch=8, like={"mask": np.array([[3, 1, 4, 1, 5]])}, seed=0)
    assert not (np.diff(ids["mask"], axis=1) <= 0).all()  # other integer inputs stay uniform


@pytest.fixture
def quant(cache_dir):
    made = {"quant": FakeBackend("quant", precisions=("fp32", "int8"), noise=0.002),
            "fp32only": FakeBackend("fp32only")}
    for name, backend in made.items():
        register_backend(name, backend)
    yield made
    for name in made:
        unregister_backend(name)


def test_int8_boost_calibrates_validates_and_reports(quant, cache_dir):
    said: list[str] = []
    boosted = yellowstone.boost(NumpyModel(), backends="quant,fp32only", precision="int8",
                                cache_dir=cache_dir, progress=said.append, **FAST)
    assert "[1/2] quant: validating (2 input sets)" in said  # one round + the accuracy set
    rep = boosted.report
    assert rep.precision == "int8" and boosted.backend == "quant"
    assert rep.calibration.startswith("synthetic: 32 random samples")
    assert quant["quant"].calibrations == [(32, {"x": (1, 6)})]
    cand = rep.candidate("quant")
    assert cand.top1_agreement is not None and cand.top1_agreement >= 0.9
    assert 0.99 < cand.mean_cosine < 1.0  # the noise is seen, and is small
    other = rep.candidate("fp32only")
    assert other.status == "unavailable" and other.reason == "fake: no int8"
    assert "top-1 agree" in rep.table() and "int8 calibration synthetic" in rep.table()


def test_synthetic_calibration_is_reproducible_so_artifacts_cache(quant, cache_dir):
    yellowstone.boost(NumpyModel(), backends="quant", precision="int8", cache_dir=cache_dir, **FAST)
    again = yellowstone.boost(NumpyModel(), backends="quant", precision="int8", cache_dir=cache_dir,
                              **FAST)
    assert quant["quant"].compiles == 1 and again.report.cache == "hit"


def test_user_calibration_is_used_and_keys_its_own_artifact(quant, cache_dir, tmp_path):
    yellowstone.boost(NumpyModel(), backends="quant", precision="int8", cache_dir=cache_dir, **FAST)
    data = np.random.default_rng(5).standard_normal((10, 6)).astype(np.float32)
    path = tmp_path / "calib.npz"
    np.savez(path, x=data)
    boosted = yellowstone.boost(NumpyModel(), backends="quant", precision="int8",
                                cache_dir=cache_dir, calibration=str(path), **FAST)
    assert quant["quant"].compiles == 2  # new calibration data, new artifact
    assert quant["quant"].calibrations[-1] == (10, {"x": (1, 6)})
    assert boosted.report.calibration == "file calib.npz, 10 samples"
    np.savez(path, y=data)
    with pytest.raises(ConfigError, match="calibration inputs lack x"):
        yellowstone.boost(NumpyModel(), backends="quant", precision="int8", cache_dir=cache_dir,
                          calibration=str(path), **FAST)


def test_noisy_backend_is_rejected_at_fp32_with_its_errors_reported(quant, cache_dir):
    boosted = yellowstone.boost(NumpyModel(), backends="quant", precision="fp32",
                                cache_dir=cache_dir, **FAST)
    cand = boosted.report.candidate("quant")
    assert boosted.backend == "native" and cand.status == "rejected"
    assert cand.max_abs_err is not None and cand.max_abs_err > 1e-4  # what it would have cost


def test_task_and_calibration_options_are_validated():
    with pytest.raises(ConfigError, match="task 'ranking' is not one of"):
        yellowstone.BoostConfig(task="ranking")
    with pytest.raises(ConfigError, match="calibration_samples"):
        yellowstone.BoostConfig(calibration_samples=0)


def test_no_int8_candidate_beating_native_serves_fp32_compiled_not_native(quant, cache_dir):
    """int8 asked for, its only candidate too noisy to validate: the fp32 search runs and its
    compiled winner serves (same accuracy as native, faster); the int8 report rides along, and
    a second boost loads both decisions from the cache without compiling."""
    quant["quant"].noise = 0.5  # far past int8's accuracy policy
    boosted = yellowstone.boost(NumpyModel(), backends="quant,fp32only", precision="int8",
                                cache_dir=cache_dir, **FAST)
    rep = boosted.report
    assert rep.precision == "fp32" and boosted.backend in ("quant", "fp32only"), rep.table()
    assert rep.precision_fallback["precision"] == "int8"
    reduced = {c["backend"]: c["status"] for c in rep.precision_fallback["candidates"]}
    assert reduced["quant"] == "rejected" and reduced["native"] == "chosen"
    assert "no int8 candidate beat native" in rep.fallback_reason
    x = {"x": np.random.default_rng(5).standard_normal((2, 6)).astype(np.float32)}
    np.testing.assert_allclose(boosted.run(x)[0], NumpyModel().run(x)[0], rtol=1e-5, atol=1e-6)
    compiles = quant["quant"].compiles + quant["fp32only"].compiles
    again = yellowstone.boost(NumpyModel(), backends="quant,fp32only", precision="int8",
                              cache_dir=cache_dir, **FAST)
    assert again.backend == boosted.backend and again.report.cache == "hit"
    assert quant["quant"].compiles + quant["fp32only"].compiles == compiles


def test_an_fp32_artifact_saved_after_the_fallback_loads_for_int8(quant, cache_dir, tmp_path):
    quant["quant"].noise = 0.5
    boosted = yellowstone.boost(NumpyModel(), backends="quant,fp32only", precision="int8",
                                cache_dir=cache_dir, **FAST)
    out = boosted.save(tmp_path / "artifact")
    compiles = quant["quant"].compiles + quant["fp32only"].compiles
    again = yellowstone.boost(NumpyModel(), backends="quant,fp32only", precision="int8",
                              cache=False, artifact_dir=out, **FAST)
    assert again.report.cache == "artifact" and again.backend == boosted.backend
    assert again.report.precision == "fp32" and again.report.precision_fallback["precision"] == "int8"
    assert quant["quant"].compiles + quant["fp32only"].compiles == compiles
