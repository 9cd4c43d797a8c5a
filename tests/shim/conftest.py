"""Fixtures for the shim tests: a SavedModel with a shipped shim artifact, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def boosted_saved_model(tmp_path_factory) -> Path:
    """<dir> holding saved_model.pb and yellowstone/serving_default/shim.txt."""
    root = tmp_path_factory.mktemp("shim")
    path = root / "model"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("YELLOWSTONE_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "shim_models.py"), str(path), str(root / "cache")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (path / "yellowstone" / "serving_default" / "shim.txt").exists()
    return path
