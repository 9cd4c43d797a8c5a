"""The shim's ONNX Runtime C path: values equal TensorFlow's and ONNX Runtime Python's, dynamic batch,
error codes, the GIL released, and the ``backend onnxruntime`` manifest round trip."""

from __future__ import annotations

import shutil
import sys
import threading
import time

import numpy as np
import pytest

from yellowstone.errors import BadRequestError, ModelLoadError

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino, pytest.mark.tensorflow]

YS_ERR_SHAPE, YS_ERR_DTYPE, YS_ERR_LOAD = 4, 5, 2


@pytest.fixture(scope="module")
def ort_shim(ort_shim_dir):
    from yellowstone.plugins.tfserving.native import ShimModel

    model = ShimModel(ort_shim_dir)
    yield model
    model.close()


def _manifest(shim_dir) -> dict[str, str]:
    rows = [line.partition(" ") for line in (shim_dir / "shim.txt").read_text().splitlines()]
    return {k: v for k, _, v in rows if k not in ("input", "output")}


@pytest.fixture(scope="module")
def ort_python(ort_shim_dir):
    """ONNX Runtime's Python API on the same model.onnx: feeds -> outputs by name."""
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(ort_shim_dir / _manifest(ort_shim_dir)["onnx"]), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(None, feeds)))


def _feeds(rng, batch):
    return {
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
        "k": rng.integers(1, 9, batch).astype(np.int32),
    }


def test_runs_on_onnxruntime(ort_shim):
    import onnxruntime

    from yellowstone.plugins.tfserving.native import runtime

    assert ort_shim.backend == "onnxruntime" and ort_shim._model.backend == "onnxruntime"
    assert runtime("onnxruntime").version == onnxruntime.__version__
    assert ort_shim.signature == "serving_default"
    assert [(n, dt, s) for n, _, dt, s in ort_shim.inputs] == [
        ("k", "int32", (-1,)),
        ("x", "float32", (-1, 4)),
    ]
    assert [(n, dt, s) for n, _, dt, s in ort_shim.outputs] == [
        ("y", "float32", (-1, 5)),
        ("z", "float32", (-1,)),
    ]


def test_matches_tensorflow_and_onnxruntime_python(ort_shim, tf_reference, ort_python):
    rng = np.random.default_rng()
    for batch in (1, 3, 17, 64):  # one session, any batch (the ONNX batch dim is dynamic)
        feeds = _feeds(rng, batch)
        got, want, ort_out = ort_shim.run(feeds), tf_reference(feeds), ort_python(feeds)
        for k in ("y", "z"):
            assert got[k].shape == want[k].shape == ort_out[k].shape
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=1e-4)
            np.testing.assert_allclose(got[k], ort_out[k], atol=1e-6, rtol=1e-6)
        assert np.any(got["y"] != 0)


def test_bad_inputs_raise_bad_request_with_the_shim_status(ort_shim):
    rng = np.random.default_rng()
    feeds = _feeds(rng, 2)
    with pytest.raises(BadRequestError, match="input 'x': expects dtype float32, got float64") as exc:
        ort_shim.run({**feeds, "x": feeds["x"].astype(np.float64)})
    assert exc.value.shim_status == YS_ERR_DTYPE
    with pytest.raises(BadRequestError, match=r"input 'x': expects shape \[-1,4\]") as exc:
        ort_shim.run({**feeds, "x": feeds["x"][:, :3].copy()})
    assert exc.value.shim_status == YS_ERR_SHAPE
    with pytest.raises(BadRequestError):
        ort_shim.run({"x": feeds["x"]})
    assert ort_shim.run(feeds)["y"].shape == (2, 5)  # still serving


def test_the_gil_is_released_while_onnxruntime_runs(ort_shim):
    """A Python thread keeps running while another thread is inside the C run."""
    rng = np.random.default_rng()
    feeds = _feeds(rng, 1_500_000)  # a long call: ~100 MB in and out
    stop, ticks = threading.Event(), []

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        calls = []
        for _ in range(3):
            t0 = time.perf_counter()
            ort_shim.run(feeds)
            calls.append((t0, time.perf_counter()))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    t0, t1 = max(calls, key=lambda c: c[1] - c[0])
    inside = [t for t in ticks if t0 <= t <= t1]
    gaps = np.diff([t0, *inside, t1])
    # Holding the GIL would stop the ticker for the whole call: one gap as long as the call.
    assert t1 - t0 > 0.02, "the call is too short to tell"
    assert len(inside) > 10 and gaps.max() < 0.5 * (t1 - t0), (t1 - t0, gaps.max(), len(inside))


def test_two_threads_share_one_session(ort_shim, tf_reference):
    rng = np.random.default_rng()
    cases = [_feeds(rng, int(b)) for b in rng.integers(1, 9, 12)]
    wants = [tf_reference(f) for f in cases]
    errors: list[BaseException] = []

    def worker(idx: int) -> None:
        try:
            for _ in range(10):
                for i in range(idx, len(cases), 2):
                    got = ort_shim.run(cases[i])
                    np.testing.assert_allclose(got["y"], wants[i]["y"], atol=1e-5, rtol=1e-4)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_manifest_round_trip(ort_shim_dir, boosted_saved_model, tmp_path, tf_reference):
    """write_shim_manifest -> shim.txt -> C: the backend line, ORT's lines and session options."""
    import onnxruntime

    from yellowstone import BoostConfig
    from yellowstone.plugins.tfserving.artifacts import read_identity, read_meta_graph, write_shim_manifest
    from yellowstone.plugins.tfserving.native import ShimModel, binding, onnxruntime_c_library

    assert binding().manifest_backend(str(ort_shim_dir)) == ("onnxruntime", onnxruntime_c_library())
    ident = read_identity(ort_shim_dir)
    assert ident["backend"] == "onnxruntime" and ident["backend_version"] == onnxruntime.__version__

    out = tmp_path / "sig"
    shutil.copytree(ort_shim_dir, out)
    sig = read_meta_graph(boosted_saved_model).signature_def["serving_default"]
    cfg = BoostConfig(
        threads=1,
        workers=2,
        options={"onnxruntime": {"session_config": {"session.inter_op.allow_spinning": "0"}}},
    )
    model_file = _manifest(ort_shim_dir)["onnx"]
    write_shim_manifest(
        out, model_file, backend="onnxruntime", signature="serving_default", sig=sig, cfg=cfg, identity=ident
    )
    text = (out / "shim.txt").read_text()
    for line in (
        "backend onnxruntime",
        f"onnx {model_file}",
        f"ortlib {onnxruntime_c_library()}",
        "ort_threads 1",
        "ort_optimization 99",
        "ort_config session.intra_op.allow_spinning 0",
        "ort_config session.inter_op.allow_spinning 0",
        "input x serving_default_x:0 float32 1 2 -1 4",
    ):
        assert line in text.splitlines(), line
    assert read_identity(out) == ident
    shim = ShimModel(out)
    try:
        assert shim.backend == "onnxruntime"
        feeds = _feeds(np.random.default_rng(), 5)
        np.testing.assert_allclose(shim.run(feeds)["z"], tf_reference(feeds)["z"], atol=1e-5, rtol=1e-4)
    finally:
        shim.close()

    # A port the session does not have as described is refused when the model opens.
    (out / "shim.txt").write_text(
        text.replace("input k serving_default_k:0 int32", "input k serving_default_k:0 int64")
    )
    with pytest.raises(
        ModelLoadError, match="input 'k' is int32 rank 1 in .*, int64 rank 1 in the manifest"
    ) as exc:
        ShimModel(out)
    assert exc.value.shim_status == YS_ERR_LOAD
    # An ONNX Runtime manifest on OpenVINO's runtime, and back: the runtime must match.
    from yellowstone.plugins.tfserving.native import runtime

    with pytest.raises(ModelLoadError, match="is for the onnxruntime backend; this runtime loaded openvino"):
        binding().Model(runtime("openvino"), str(ort_shim_dir))


def test_a_manifest_without_backend_is_openvino(boosted_saved_model, tmp_path, tf_reference):
    from yellowstone.plugins.tfserving.native import ShimModel

    shipped = boosted_saved_model / "yellowstone" / "serving_default"
    out = tmp_path / "legacy"
    shutil.copytree(shipped, out)
    text = (out / "shim.txt").read_text()
    assert "backend openvino" in text
    (out / "shim.txt").write_text(
        "".join(line for line in text.splitlines(keepends=True) if not line.startswith("backend "))
    )
    shim = ShimModel(out)
    try:
        assert shim.backend == "openvino"
        feeds = _feeds(np.random.default_rng(), 3)
        np.testing.assert_allclose(shim.run(feeds)["y"], tf_reference(feeds)["y"], atol=1e-5, rtol=1e-4)
    finally:
        shim.close()
