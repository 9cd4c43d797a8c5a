"""Small SavedModels for the shim tests (built in a subprocess: keeps TF out of the test process)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_two_signatures(path: str) -> None:
    """A tf.Module with serving_default (x, k -> y, z) and another signature (x -> out)."""
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            g = tf.random.Generator.from_seed(3)
            self.w = tf.Variable(g.normal((4, 5)))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int32, name="k"),
            ]
        )
        def serve(self, x, k):
            y = tf.nn.relu(tf.matmul(x, self.w))
            return {"y": y, "z": tf.reduce_sum(y, axis=1) * tf.cast(k, tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def other(self, x):
            return {"out": tf.nn.tanh(tf.matmul(x, self.w))}

    m = Model()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve, "other": m.other})


def config(cache_dir: str, backends: str) -> dict:
    """The boost options of the shim tests: one C path, a short benchmark."""
    return {"cache_dir": cache_dir, "backends": backends, "time_budget_s": 0.05}


if __name__ == "__main__":
    # shim_models.py MODEL [CACHE [ORT_ROOT]]: the SavedModel; with CACHE the shipped OpenVINO shim
    # directory (<MODEL>/yellowstone/serving_default); with ORT_ROOT an ONNX Runtime one there.
    build_two_signatures(sys.argv[1])
    if len(sys.argv) > 2:
        from yellowstone.plugins.tfserving.artifacts import prepare

        assert prepare(sys.argv[1], policy="always", config=config(sys.argv[2], "openvino"))
    if len(sys.argv) > 3:
        assert prepare(sys.argv[1], sys.argv[3], policy="always", config=config(sys.argv[2], "onnxruntime"))
