"""Flags the server cannot honour stop it at start, as ``tensorflow_model_server`` stops on a bad config.

Each case runs ``python -m yellowstone.plugins.tfserving`` and checks the exit status and TF
Serving's ``Failed to start server. Error: CODE: message`` line (or argparse's usage error for an
unknown flag). No model loads: every refusal comes before the first version, except a version
that fails to load, which is tried once (``--max_num_load_retries=0``; the default retries 5
times, 60 s apart, as TF Serving does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.server, pytest.mark.tensorflow]


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "yellowstone.plugins.tfserving", *argv],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_malformed_model_config_file_exits_with_tf_servings_message(tmp_path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/models/m" ')
    proc = _run(f"--model_config_file={config}", "--port=0")
    assert proc.returncode == 255, proc.stdout + proc.stderr
    want = f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{config}'"
    assert want in proc.stdout


def test_unusable_ssl_config_is_an_error_never_plaintext(tmp_path):
    ssl = tmp_path / "ssl.config"
    ssl.write_text('server_key: "/etc/ssl/key.pem"\nserver_cert: "/etc/ssl/cert.pem"\n')
    proc = _run("--model_base_path=/nonexistent", f"--ssl_config_file={ssl}", "--port=0")
    assert proc.returncode == 255
    want = "Failed to start server. Error: INVALID_ARGUMENT: SSLConfig.server_key holds no PEM block"
    assert want in proc.stdout


def test_batching_parameters_without_enable_batching(tmp_path):
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 4 }\n")
    proc = _run("--model_base_path=/nonexistent", f"--batching_parameters_file={params}", "--port=0")
    assert proc.returncode == 255
    assert ("server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.") in proc.stdout


def test_unknown_flag_is_refused():
    proc = _run("--model_base_path=/nonexistent", "--no_such_flag=1")
    assert proc.returncode == 2
    assert "unknown argument: --no_such_flag=1" in proc.stderr


def test_version():
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("TensorFlow ModelServer: ") and "TensorFlow Library: " in proc.stdout


def test_a_version_that_fails_to_load_stops_the_start(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, str(HERE / "tfs_models.py"), "keras", str(tmp_path / "m" / "1")],
                   check=True, env=env, capture_output=True, timeout=240)
    proc = _run(f"--model_base_path={tmp_path / 'm'}", "--model_name=m", "--saved_model_tags=gpu",
                "--max_num_load_retries=0", "--yellowstone_shim=off", "--port=0", timeout=240)
    assert proc.returncode == 255, proc.stdout + proc.stderr
    assert ("Failed to start server. Error: UNKNOWN: Some models did not become available: "
            "{{name: m version: 1}, }") in proc.stdout
    assert "Could not find meta graph def matching supplied tags: { gpu }" in proc.stderr
    assert "Retrying load" not in proc.stderr  # tried once: no 60 s waits between retries
