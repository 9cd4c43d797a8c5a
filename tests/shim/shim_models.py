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


if __name__ == "__main__":
    build_two_signatures(sys.argv[1])
    if len(sys.argv) > 2:  # also write the shipped shim artifact: <path>/yellowstone/serving_default
        from yellowstone.plugins.tfserving.artifacts import prepare

        prepare(sys.argv[1], boost_options={"cache_dir": sys.argv[2]})
