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

import pytest
from tfs_server import build_model

pytestmark = [pytest.mark.server, pytest.mark.tensorflow]


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "yellowstone.plugins.tfserving", *argv],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _refused(path, text: str, flag: str, *argv: str) -> str:
    """Write ``text`` at ``path`` and start with ``argv`` and ``flag=path``: exit status 255; the stdout."""
    path.write_text(text)
    proc = _run(*argv, f"{flag}={path}", "--port=0")
    assert proc.returncode == 255, proc.stdout + proc.stderr
    return proc.stdout


def test_malformed_model_config_file_exits_with_tf_servings_message(tmp_path):
    config = tmp_path / "models.config"
    out = _refused(config, 'model_config_list { config { name: "m" base_path: "/models/m" ',
                   "--model_config_file")
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{config}'" in out


def test_unusable_ssl_config_is_an_error_never_plaintext(tmp_path):
    ssl = 'server_key: "/etc/ssl/key.pem"\nserver_cert: "/etc/ssl/cert.pem"\n'
    out = _refused(tmp_path / "ssl.config", ssl, "--ssl_config_file", "--model_base_path=/nonexistent")
    assert "Failed to start server. Error: INVALID_ARGUMENT: SSLConfig.server_key holds no PEM block" in out


def test_batching_parameters_without_enable_batching(tmp_path):
    out = _refused(tmp_path / "batching.config", "max_batch_size { value: 4 }\n",
                   "--batching_parameters_file", "--model_base_path=/nonexistent")
    assert ("server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.") in out


def test_unknown_flag_is_refused():
    proc = _run("--model_base_path=/nonexistent", "--no_such_flag=1")
    assert proc.returncode == 2
    assert "unknown argument: --no_such_flag=1" in proc.stderr


def test_version():
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("TensorFlow ModelServer: ") and "TensorFlow Library: " in proc.stdout


def test_a_version_that_fails_to_load_stops_the_start(tmp_path):
    build_model("keras", tmp_path / "m" / "1")
    proc = _run(f"--model_base_path={tmp_path / 'm'}", "--model_name=m", "--saved_model_tags=gpu",
                "--max_num_load_retries=0", "--yellowstone_shim=off", "--port=0", timeout=240)
    assert proc.returncode == 255, proc.stdout + proc.stderr
    assert ("Failed to start server. Error: UNKNOWN: Some models did not become available: "
            "{{name: m version: 1}, }") in proc.stdout
    assert "Could not find meta graph def matching supplied tags: { gpu }" in proc.stderr
    assert "Retrying load" not in proc.stderr  # tried once: no 60 s waits between retries
