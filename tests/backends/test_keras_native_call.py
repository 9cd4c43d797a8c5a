"""A Keras model served natively is called as a graph, not op by op from Python."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone

pytestmark = [pytest.mark.tensorflow]


def test_native_keras_call_runs_the_graph_function_not_eager_python():
    keras = pytest.importorskip("keras")
    calls = []

    def counted(t):
        calls.append(1)  # runs on every eager call; in a graph, only while tracing
        return t

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Lambda(counted)(inp)))
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    model(x)
    boosted = yellowstone.boost(model, (x,), backends="native", batch_sizes=(2,), cache=False,
                                time_budget_s=0.01)
    calls.clear()
    outs = [boosted(x) for _ in range(5)]
    assert len(calls) <= 2, "each call ran the model's Python: eager, not the graph"
    np.testing.assert_allclose(np.asarray(outs[-1]), np.asarray(model(x)), atol=1e-6)
    assert type(outs[-1]) is type(model(x))  # the same result type as the user's own call
