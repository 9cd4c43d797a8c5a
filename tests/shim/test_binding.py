"""The CPython binding over the C shim: values equal TensorFlow's, zero-copy, threads, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from yellowstone.errors import BadRequestError, ModelLoadError

pytestmark = [pytest.mark.openvino, pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def shim(boosted_saved_model):
    from yellowstone.plugins.tfserving.native import ShimModel

    model = ShimModel(boosted_saved_model / "yellowstone" / "serving_default")
    yield model
    model.close()


def _feeds(rng, batch):
    return {
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
        "k": rng.integers(1, 9, batch).astype(np.int32),
    }


def test_describes_signature(shim):
    assert shim.signature == "serving_default"
    assert [(n, dt, s) for n, _, dt, s in shim.inputs] == [("k", "int32", (-1,)), ("x", "float32", (-1, 4))]
    assert [(n, dt, s) for n, _, dt, s in shim.outputs] == [
        ("y", "float32", (-1, 5)),
        ("z", "float32", (-1,)),
    ]
    assert shim.inputs[1][1] == "serving_default_x:0"


def test_matches_tensorflow(shim, tf_reference):
    rng = np.random.default_rng()
    for batch in (1, 3, 17):
        feeds = _feeds(rng, batch)
        got, want = shim.run(feeds), tf_reference(feeds)
        for k in ("y", "z"):
            assert got[k].shape == want[k].shape
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=1e-4)


def test_writes_into_caller_buffers(shim, tf_reference):
    from yellowstone.plugins.tfserving.native import binding

    rng = np.random.default_rng()
    feeds = _feeds(rng, 4)
    y = np.full((4, 5), np.nan, np.float32)
    z = np.full((4,), np.nan, np.float32)
    shapes = shim._model.run([feeds["k"], feeds["x"]], [y, z])
    assert shapes == [(4, 5), (4,)]
    want = tf_reference(feeds)
    np.testing.assert_allclose(y, want["y"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(z, want["z"], atol=1e-5, rtol=1e-4)
    # A too-small buffer without an allocator is an error that reports the needed shape.
    with pytest.raises(Exception, match="larger buffer"):
        shim._model.run([feeds["k"], feeds["x"]], [np.empty((1, 5), np.float32), z])
    assert binding().version == "0.2.0"


def test_concurrent_threads_share_one_handle(shim, tf_reference):
    rng = np.random.default_rng()
    cases = [_feeds(rng, int(b)) for b in rng.integers(1, 9, 24)]
    wants = [tf_reference(f) for f in cases]
    errors: list[BaseException] = []

    def worker(idx: int) -> None:
        try:
            for _ in range(20):
                for i in range(idx, len(cases), 4):
                    got = shim.run(cases[i])
                    np.testing.assert_allclose(got["y"], wants[i]["y"], atol=1e-5, rtol=1e-4)
                    np.testing.assert_allclose(got["z"], wants[i]["z"], atol=1e-5, rtol=1e-4)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_bad_inputs_raise_bad_request(shim):
    rng = np.random.default_rng()
    feeds = _feeds(rng, 2)
    with pytest.raises(BadRequestError, match="dtype float32, got float64"):
        shim.run({**feeds, "x": feeds["x"].astype(np.float64)})
    with pytest.raises(BadRequestError, match="shape"):
        shim.run({**feeds, "x": feeds["x"][:, :3].copy()})
    with pytest.raises(BadRequestError):
        shim.run({"x": feeds["x"]})
    assert shim.run(feeds)["y"].shape == (2, 5)  # still serving


def test_missing_artifact_raises_model_load_error(tmp_path):
    from yellowstone.plugins.tfserving.native import ShimModel

    with pytest.raises(ModelLoadError, match="shim.txt"):
        ShimModel(tmp_path)
