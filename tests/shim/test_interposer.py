"""LD_PRELOAD interposer: a C program's TF_SessionRun on the boosted signature is served by the shim.

The program is built here with gcc against the TensorFlow wheel's C API headers and library.
The same run without the preload (TensorFlow alone) gives the reference values.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.openvino,
    pytest.mark.tensorflow,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc"),
]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Path:
    tf_dir = Path(sysconfig.get_paths()["purelib"]) / "tensorflow"
    if not (tf_dir / "include" / "tensorflow" / "c" / "c_api.h").exists():
        pytest.skip("the TensorFlow wheel has no C API headers")
    exe = tmp_path_factory.mktemp("cclient") / "tf_c_client"
    subprocess.run(
        [
            "gcc",
            "-O1",
            "-o",
            str(exe),
            str(HERE / "tf_c_client.c"),
            f"-I{tf_dir / 'include'}",
            f"-L{tf_dir}",
            "-l:libtensorflow_cc.so.2",
            "-l:libtensorflow_framework.so.2",
            f"-Wl,-rpath,{tf_dir}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return exe


def _run(
    client: Path, model: Path, batch: int, fetch: str, feeds: list[str], stdin: str, preload: bool
) -> tuple[np.ndarray, str]:
    from yellowstone.plugins.tfserving.native import openvino_c_library, preload_library

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", YS_SHIM_TRACE="1")
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(preload_library())
        env["YS_OPENVINO_C_LIB"] = openvino_c_library()
    proc = subprocess.run(
        [str(client), str(model), str(batch), fetch, *feeds],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.array([float(v) for v in proc.stdout.split()], np.float32), proc.stderr


@pytest.fixture(params=["openvino", "onnxruntime"])
def shipped_model(request, boosted_saved_model, ort_shim_dir, tmp_path_factory) -> Path:
    """The SavedModel with its shipped shim directory on OpenVINO, or a copy shipped on ONNX Runtime."""
    if request.param == "openvino":
        return boosted_saved_model
    model = tmp_path_factory.mktemp("ort-shipped") / "model"
    shutil.copytree(boosted_saved_model, model, ignore=shutil.ignore_patterns("yellowstone"))
    shutil.copytree(ort_shim_dir, model / "yellowstone" / "serving_default")
    return model


def test_preloaded_session_run(client, shipped_model):
    from yellowstone.plugins.tfserving.artifacts import read_meta_graph

    boosted_saved_model = shipped_model
    backend = "onnxruntime" if "ort-shipped" in str(shipped_model) else "openvino"
    sigs = read_meta_graph(boosted_saved_model).signature_def
    main, other = sigs["serving_default"], sigs["other"]
    rng = np.random.default_rng()
    batch = 3
    x = rng.standard_normal((batch, 4)).astype(np.float32)
    k = rng.integers(1, 9, batch).astype(np.int32)
    stdin = " ".join(f"{v:.9g}" for v in x.reshape(-1)) + "\n" + " ".join(str(v) for v in k)
    feeds = [f"{main.inputs['x'].name}:f4", f"{main.inputs['k'].name}:i4"]

    for fetch in (main.outputs["y"].name, main.outputs["z"].name):
        ref, ref_log = _run(client, boosted_saved_model, batch, fetch, feeds, stdin, preload=False)
        got, log = _run(client, boosted_saved_model, batch, fetch, feeds, stdin, preload=True)
        assert "ys-shim" not in ref_log
        assert "boosted signature 'serving_default' loaded" in log and f"({backend})" in log
        assert "TF_SessionRun -> shim (signature 'serving_default')" in log, log[-2000:]
        assert got.shape == ref.shape and ref.size in (batch * 5, batch)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)
        assert np.any(ref != 0)

    # Another signature in the same SavedModel passes through to TensorFlow untouched.
    stdin_x = " ".join(f"{v:.9g}" for v in x.reshape(-1))
    fetch = other.outputs["out"].name
    feeds = [f"{other.inputs['x'].name}:f4"]
    ref, _ = _run(client, boosted_saved_model, batch, fetch, feeds, stdin_x, preload=False)
    got, log = _run(client, boosted_saved_model, batch, fetch, feeds, stdin_x, preload=True)
    assert "TF_SessionRun -> tensorflow" in log and "-> shim" not in log
    np.testing.assert_array_equal(got, ref)
