"""Fixtures for the shim tests: a SavedModel with a shipped shim artifact, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shim_root(tmp_path_factory) -> Path:
    """model/ (a SavedModel with yellowstone/serving_default: OpenVINO), ort/serving_default
    (its ONNX Runtime shim directory), cache/ (the core's cache both were built with)."""
    root = tmp_path_factory.mktemp("shim")
    path = root / "model"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "shim_models.py"), str(path), str(root / "cache"), str(root / "ort")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (path / "yellowstone" / "serving_default" / "shim.txt").exists()
    assert (root / "ort" / "serving_default" / "shim.txt").exists()
    return root


@pytest.fixture(scope="session")
def boosted_saved_model(shim_root) -> Path:
    """<dir> holding saved_model.pb and yellowstone/serving_default/shim.txt (OpenVINO)."""
    return shim_root / "model"


@pytest.fixture(scope="session")
def ort_shim_dir(shim_root) -> Path:
    """The ONNX Runtime shim directory of the same signature."""
    return shim_root / "ort" / "serving_default"


@pytest.fixture(scope="session")
def tf_reference(boosted_saved_model):
    """TensorFlow's own signature call: feeds -> outputs by name."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(boosted_saved_model)).signatures["serving_default"]
    return lambda feeds: {
        k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()
    }
