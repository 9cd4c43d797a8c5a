"""``yellowstone run``: ordinary applications give the same outputs, served by a boosted backend.

Every application is plain framework code written to a temp file and run twice in subprocesses:
plainly (``python app.py``) and under ``python -m yellowstone run --report r.json app.py``. The
outputs are compared within tolerance and the report must name the backend that served, with
calls counted on the boosted path. Fresh random inputs each run (a seed drawn per test).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from . import apps

PY = sys.executable
BACKENDS = "onnxruntime,openvino"
TF_OK = importlib.util.find_spec("tensorflow") is not None
TORCH_OK = importlib.util.find_spec("torch") is not None
HTTP_OK = all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "requests"))
needs_tf = pytest.mark.skipif(not TF_OK, reason="tensorflow is not installed")
needs_torch = pytest.mark.skipif(not TORCH_OK, reason="torch is not installed")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YELLOWSTONE_")}
    env.update(YELLOWSTONE_BACKENDS=BACKENDS, YELLOWSTONE_TIME_BUDGET_S="0.05",
               YELLOWSTONE_VALIDATION_ROUNDS="1", YELLOWSTONE_CACHE_DIR=str(tmp / "cache"),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore::FutureWarning",
               CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path,
         timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def _both(app: str, argv: list[str], tmp: Path, **env_extra: str):
    """Run ``app`` plainly and under yellowstone; return both npz outputs, stdouts, report."""
    script = tmp / "app.py"
    script.write_text(app)
    seed = str(random.randrange(1, 10**6))
    env = _env(tmp, **env_extra)
    plain = _run([str(script), *argv, str(tmp / "plain.npz"), seed], env, tmp)
    boosted = _run(["-m", "yellowstone", "run", "--report", str(tmp / "report.json"),
                    str(script), *argv, str(tmp / "ys.npz"), seed], env, tmp)
    report = json.loads((tmp / "report.json").read_text())
    return (np.load(tmp / "plain.npz"), np.load(tmp / "ys.npz"), plain, boosted, report)


def _assert_same(a, b, atol: float = 1e-4) -> None:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].shape == b[k].shape, k
        assert np.abs(a[k]).max() > 0, f"{k} is all zero: the test would prove nothing"
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=atol, err_msg=k)


def _served(report: dict, api: str) -> dict:
    models = [m for m in report["models"] if m["api"] == api]
    assert models, f"no {api} model in report: {report}"
    m = models[0]
    assert m["state"] == "boosted", m
    assert m["backend"] in BACKENDS.split(","), m
    assert m["report"]["chosen"] == m["backend"]
    assert m["calls"]["boosted"] >= 1, m
    return m


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("torch_models")
    (d / "netdef.py").write_text(apps.NETDEF)
    (d / "make.py").write_text(apps.MAKE_TORCH_MODELS)
    _run([str(d / "make.py"), str(d)], _env(d), d)
    return d


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tf_models")
    (d / "make.py").write_text(apps.MAKE_TF_MODELS)
    _run([str(d / "make.py"), str(d)], _env(d), d)
    return d


# ------------------------------------------------------------------------------------------
@needs_torch
def test_torchscript_and_torch_load_service(torch_models: Path, tmp_path: Path) -> None:
    a, b, plain, ys, report = _both(apps.TORCHSCRIPT_APP, [str(torch_models)], tmp_path)
    _assert_same(a, b)
    cnn = _served(report, "torch.jit.load")
    # 2 calls went to the original: the 24x24 image (rejected shape) and the gradient call.
    assert cnn["calls"]["rejected"] == 1 and cnn["calls"]["original"] == 2, cnn
    assert cnn["calls"]["boosted"] == 5, cnn
    mlp = _served(report, "torch.load")
    assert mlp["calls"]["boosted"] == 3, mlp
    # the application saw its usual objects: same printed line, module API intact
    assert plain.stdout.replace("RecursiveScriptModule", "X") == \
        ys.stdout.replace("TorchModuleProxy", "X")
    assert "tensorflow imported: False" in ys.stdout
    assert f"torch.jit.load model served by {cnn['backend']}" in ys.stderr


@needs_tf
def test_keras_load_model_predict(tf_models: Path, tmp_path: Path) -> None:
    a, b, plain, ys, report = _both(apps.KERAS_APP, [str(tf_models / "clf.keras")], tmp_path)
    _assert_same(a, b)
    m = _served(report, "keras.models.load_model")
    assert m["calls"]["boosted"] == 3 and m["calls"]["original"] == 0, m
    assert plain.stdout == ys.stdout  # same layers; torch never imported under the interposer
    assert "torch imported: False" in ys.stdout


@needs_tf
def test_saved_model_signature(tf_models: Path, tmp_path: Path) -> None:
    a, b, plain, ys, report = _both(apps.SAVED_MODEL_APP, [str(tf_models / "scorer")], tmp_path)
    _assert_same(a, b)
    m = _served(report, "tf.saved_model.load")
    assert m["calls"]["boosted"] == 3, m  # batch 9 after 4: dynamic batch, still boosted
    assert sorted(m["report"]["outputs"]) == ["logits", "probs"]
    assert plain.stdout == ys.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_query(cmd: list[str], env: dict, cwd: Path, payloads: list) -> list:
    import requests

    port = _free_port()
    proc = subprocess.Popen([PY, *cmd, str(port)], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read()[-3000:]}")
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        outs = []
        for p in payloads:
            r = requests.post(url + "/predict", json={"instances": p}, timeout=120)
            assert r.status_code == 200, r.text
            outs.append(np.asarray(r.json()["predictions"], dtype=np.float32))
        return outs
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@needs_torch
@pytest.mark.skipif(not HTTP_OK, reason="fastapi/uvicorn/requests not installed")
def test_http_service_torch_export(torch_models: Path, tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(apps.HTTP_APP)
    rng = np.random.default_rng()
    payloads = [rng.standard_normal((n, 12)).round(4).tolist() for n in (2, 2, 5, 1)]
    env = _env(tmp_path)
    program = str(torch_models / "mlp.pt2")
    plain = _serve_and_query([str(script), program], env, tmp_path, payloads)
    report_path = tmp_path / "report.json"
    ys = _serve_and_query(["-m", "yellowstone", "run", "--report", str(report_path),
                           str(script), program], env, tmp_path, payloads)
    for p, y in zip(plain, ys):
        assert p.shape == y.shape
        np.testing.assert_allclose(y, p, rtol=1e-4, atol=1e-5)
    m = _served(json.loads(report_path.read_text()), "torch.export.load")
    assert m["calls"]["boosted"] == len(payloads), m


# ------------------------------------------------------------------------------------------
def test_dry_run_lists_apis_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    out = _run(["-m", "yellowstone", "run", "--dry-run", "--apis", "torch.jit.load",
                str(script)], _env(tmp_path), tmp_path).stdout
    assert not marker.exists()
    lines = {ln.split()[0]: ln for ln in out.splitlines()
             if ln and not ln.startswith(("yellow", "would run"))}
    from yellowstone.interpose import api_names

    assert set(lines) == set(api_names())
    present = "present" if TORCH_OK else "absent"
    assert present in lines["torch.jit.load"] and "would interpose" in lines["torch.jit.load"] \
        or not TORCH_OK
    assert "not selected" in lines["torch.load"]
    assert ("present" in lines["tf.saved_model.load"]) == TF_OK


@needs_torch
def test_uninstall_restores_originals_and_env_switch_off(monkeypatch) -> None:
    import torch

    import yellowstone.interpose as yi

    originals = (torch.jit.load, torch.export.load, torch.load)
    monkeypatch.delenv("YELLOWSTONE_INTERPOSE", raising=False)
    assert yi.install(yi.settings_from({}, apis="torch.jit.load,torch.export.load,torch.load"))
    try:
        assert torch.jit.load is not originals[0] and torch.load is not originals[2]
        assert torch.jit.load.__wrapped__ is originals[0]
        assert set(yi.patched_functions()) == {"torch.jit.load", "torch.export.load",
                                               "torch.load"}
    finally:
        yi.uninstall()
    assert (torch.jit.load, torch.export.load, torch.load) == originals
    assert all(a is b for a, b in zip((torch.jit.load, torch.export.load, torch.load), originals))
    assert not yi.patched_functions() and not yi.is_installed()
    monkeypatch.setenv("YELLOWSTONE_INTERPOSE", "0")
    assert not yi.install()
    assert torch.jit.load is originals[0]


@needs_torch
@needs_tf
def test_patching_is_lazy_and_imports_no_framework(tmp_path: Path) -> None:
    code = ("import sys, yellowstone.interpose as yi; yi.install(); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules; "
            "import {fw}; print(sorted(yi.patched_functions())); "
            "print('torch' in sys.modules, 'tensorflow' in sys.modules)")
    env = _env(tmp_path)
    out = _run(["-c", code.format(fw="tensorflow")], env, tmp_path).stdout.splitlines()
    assert out[-1] == "False True"
    assert "tensorflow.saved_model.load" in out[-2] and "keras.models.load_model" in out[-2]
    out = _run(["-c", code.format(fw="torch")], env, tmp_path).stdout.splitlines()
    assert out[-1] == "True False"
    assert "torch.jit.load" in out[-2] and "keras" not in out[-2]


@needs_torch
def test_boost_failure_keeps_original_with_one_warning(torch_models: Path, tmp_path: Path) -> None:
    """A model that cannot be boosted serves unchanged; one WARNING names the reason."""
    cfg = tmp_path / "yellowstone.yaml"
    cfg.write_text("apis: [torch.jit.load]\nbackends: [no-such-backend]\n")
    script = tmp_path / "app.py"
    script.write_text(apps.TORCHSCRIPT_APP)
    env = _env(tmp_path)
    seed = str(random.randrange(1, 10**6))
    _run([str(script), str(torch_models), str(tmp_path / "plain.npz"), seed], env, tmp_path)
    ys = _run(["-m", "yellowstone", "run", "--config", str(cfg), "--report",
               str(tmp_path / "r.json"), str(script), str(torch_models), str(tmp_path / "ys.npz"),
               seed], env, tmp_path)
    _assert_same(np.load(tmp_path / "plain.npz"), np.load(tmp_path / "ys.npz"), atol=0)
    warnings = [ln for ln in ys.stderr.splitlines() if ln.startswith("WARNING yellowstone")]
    assert len(warnings) == 1 and "no-such-backend" in warnings[0], ys.stderr[-3000:]
    (model,) = json.loads((tmp_path / "r.json").read_text())["models"]  # torch.load not selected
    assert model["state"] == "failed" and model["calls"]["boosted"] == 0
    assert model["calls"]["original"] == 7


@needs_torch
def test_pth_hook_with_env_switch(torch_models: Path, tmp_path: Path) -> None:
    """The .pth line is processed exactly as at start-up, via ``site.addsitedir``."""
    site_dir = tmp_path / "site"
    _run(["-m", "yellowstone", "run", "--install-hook", "--site-dir", str(site_dir)],
         _env(tmp_path), tmp_path)
    pth = site_dir / "yellowstone-interpose.pth"
    assert pth.exists()
    script = tmp_path / "app.py"
    script.write_text(apps.TORCHSCRIPT_APP)
    seed = str(random.randrange(1, 10**6))
    starter = ("import site, sys, runpy; site.addsitedir({d!r}); "
               "print('hook-loaded', 'yellowstone.interpose' in sys.modules); "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    argv = ["-c", starter.format(d=str(site_dir)), str(script), str(torch_models)]
    off = _run([*argv, str(tmp_path / "plain.npz"), seed], _env(tmp_path), tmp_path)
    assert "hook-loaded False" in off.stdout  # no env switch: nothing imported
    report = tmp_path / "hook.json"
    on = _run([*argv, str(tmp_path / "ys.npz"), seed],
              _env(tmp_path, YELLOWSTONE_INTERPOSE="1", YELLOWSTONE_INTERPOSE_REPORT=str(report),
                   YELLOWSTONE_INTERPOSE_APIS="torch.jit.load"), tmp_path)
    assert "hook-loaded True" in on.stdout
    _assert_same(np.load(tmp_path / "plain.npz"), np.load(tmp_path / "ys.npz"))
    _served(json.loads(report.read_text()), "torch.jit.load")
    _run(["-m", "yellowstone", "run", "--uninstall-hook", "--site-dir", str(site_dir)],
         _env(tmp_path), tmp_path)
    assert not pth.exists()
