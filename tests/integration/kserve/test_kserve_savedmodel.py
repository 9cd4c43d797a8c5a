"""A TF SavedModel in /mnt/models (a Keras export): the predictor boosts it and serves its
signature's own input and output names over V1 and V2, with values equal to TensorFlow's."""

from __future__ import annotations

import numpy as np
import pytest
from ksserver import FAST, infer_v1_and_v2, start_server, stop_server

pytest.importorskip("tensorflow", reason="needs TensorFlow (pip install 'yellowstone[tensorflow]')")
pytestmark = [pytest.mark.server, pytest.mark.tensorflow, pytest.mark.timeout(600)]

NAME = "keras"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    import tensorflow as tf

    d = tmp_path_factory.mktemp("kserve-savedmodel")
    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((6,), name="features")
    hidden = tf.keras.layers.Dense(12, activation="tanh")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(4)(hidden))
    model.export(str(d / "models"), verbose=False)
    return d


@pytest.fixture(scope="module")
def server(saved_model):
    srv = start_server(NAME, saved_model / "models", saved_model, *FAST)
    yield srv
    stop_server(srv)


def _reference(saved_model, x):
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model / "models")).signatures["serving_default"]
    (out,) = fn(features=tf.constant(x)).values()
    return out.numpy()


def test_boosted_and_equal_to_tensorflow(server, saved_model):
    assert "ready on native" not in server.log_text(), server.log_text()[-3000:]
    x = np.random.default_rng().standard_normal((5, 6)).astype(np.float32)
    want = _reference(saved_model, x)

    out1, out2 = infer_v1_and_v2(server, "features", x)
    np.testing.assert_allclose(np.array(out1["predictions"], np.float32), want, atol=1e-4, rtol=1e-3)
    (out,) = out2.outputs
    assert out.datatype == "FP32" and list(out.shape) == [5, 4], out
    np.testing.assert_allclose(out.as_numpy(), want, atol=1e-4, rtol=1e-3)


def test_wrong_input_name_is_a_client_error(server):
    import requests

    body = {"inputs": [{"name": "nope", "shape": [1, 6], "datatype": "FP32", "data": [0.5] * 6}]}
    r = requests.post(f"{server.base_url}/v2/models/{NAME}/infer", json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    assert "features" in r.text  # says which input the model takes
    assert server.alive()
