"""SavedModels for the TF Serving API tests: a TF1 graph (placeholders, several signatures) and TF2 exports.

``tf1``: built with ``tf.compat.v1`` and saved with ``tf.compat.v1.saved_model.Builder``:

* ``serving_default``: ``x`` declared ``(-1, 1)`` -> ``y = tf.identity(tanh(x * w + b))`` (elementwise,
  so the graph answers feeds of any shape, as TF Serving's Session::Run does);
* ``two_inputs``: ``a``, ``b`` ``(-1, 4)`` -> ``sum`` ``(-1, 4)`` and ``dot`` ``(-1, 1)``;
* ``typed``: ``i`` int64, ``s`` string, ``m`` bool, ``h`` uint8 -> ``i2``, ``s_len``, ``m_not``,
  ``label_bytes`` (the strings back), ``h2``;
* ``classify`` / ``classify_scores`` / ``regress`` / ``regress_plus``: ``tf.Example`` parsing
  signatures with TF Serving's method names, all reading the one ``tf_example`` placeholder.

``tf2``: a ``tf.Module`` saved with ``tf.saved_model.save``; its signatures all carry the predict
method: ``serving_default`` takes serialized ``tf.Example`` s as ``inputs`` and gives ``classes``
and ``scores``, ``regress`` gives ``outputs``, ``predict`` maps ``x`` ``(None, 4)`` to ``y``.

``keras``: a small Keras MLP exported with ``model.export()`` (input ``x`` of 8, output ``output_0``).

Run as ``python tf1_models.py KIND PATH``; every model has random weights (seeded per call).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = 4
LABELS = (b"red", b"green", b"blue")


def _example_graph(tf, v1, w):
    """Parse serialized tf.Examples (feature ``x``: 4 floats, ``k``: 1 int64 with default 0)."""
    ser = v1.placeholder(tf.string, [None], name="tf_example")
    feats = tf.io.parse_example(
        ser,
        {
            "x": tf.io.FixedLenFeature([FEATURES], tf.float32),
            "k": tf.io.FixedLenFeature([1], tf.int64, default_value=[0]),
        },
    )
    logits = tf.matmul(feats["x"], w) + tf.cast(feats["k"], tf.float32)
    return ser, logits


def build_tf1(path: str, seed: int = 0) -> None:
    """The TF1 graph described in the module docstring."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        v1.set_random_seed(seed)
        w0 = v1.get_variable("w0", initializer=tf.random.normal([], seed=seed + 1))
        b0 = v1.get_variable("b0", initializer=tf.random.normal([], seed=seed + 2))
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        y = tf.identity(tf.tanh(x * w0 + b0), name="y")

        a = v1.placeholder(tf.float32, [None, FEATURES], name="a")
        b = v1.placeholder(tf.float32, [None, FEATURES], name="b")
        total = tf.identity(a + 2.0 * b, name="sum")
        dot = tf.identity(tf.reduce_sum(a * b, axis=1, keepdims=True), name="dot")

        i = v1.placeholder(tf.int64, [None], name="i")
        s = v1.placeholder(tf.string, [None], name="s")
        m = v1.placeholder(tf.bool, [None], name="m")
        h = v1.placeholder(tf.uint8, [None], name="h")
        typed_out = {
            "i2": tf.identity(i * 2, name="i2"),
            "s_len": tf.identity(tf.strings.length(s), name="s_len"),
            "m_not": tf.identity(tf.logical_not(m), name="m_not"),
            "label_bytes": tf.identity(s, name="label_bytes"),
            "h2": tf.identity(h + h, name="h2"),
        }

        w = v1.get_variable("w", initializer=tf.random.normal([FEATURES, len(LABELS)], seed=seed + 3))
        ser, logits = _example_graph(tf, v1, w)
        scores = tf.nn.softmax(logits)
        classes = tf.tile(tf.constant([list(LABELS)]), [tf.shape(ser)[0], 1])
        reg = tf.reduce_sum(logits, axis=1, keepdims=True)
        reg_plus = tf.reduce_max(logits, axis=1) + 1.0

        sd = v1.saved_model
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            builder = sd.Builder(path)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "serving_default": sd.predict_signature_def({"x": x}, {"y": y}),
                    "two_inputs": sd.predict_signature_def({"a": a, "b": b}, {"sum": total, "dot": dot}),
                    "typed": sd.predict_signature_def({"i": i, "s": s, "m": m, "h": h}, typed_out),
                    "classify": sd.classification_signature_def(ser, classes, scores),
                    "classify_scores": sd.classification_signature_def(ser, None, scores),
                    "regress": sd.regression_signature_def(ser, reg),
                    "regress_plus": sd.regression_signature_def(ser, reg_plus),
                },
            )
            builder.save()


def build_tf2(path: str, seed: int = 0) -> None:
    """The TF2 module described in the module docstring."""
    import tensorflow as tf

    gen = tf.random.Generator.from_seed(seed)

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(gen.normal((FEATURES, len(LABELS))))
            self.labels = tf.constant([list(LABELS)])

        def _logits(self, inputs):
            feats = tf.io.parse_example(
                inputs,
                {
                    "x": tf.io.FixedLenFeature([FEATURES], tf.float32),
                    "k": tf.io.FixedLenFeature([1], tf.int64, default_value=[0]),
                },
            )
            return tf.matmul(feats["x"], self.w) + tf.cast(feats["k"], tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            logits = self._logits(inputs)
            return {
                "classes": tf.tile(self.labels, [tf.shape(inputs)[0], 1]),
                "scores": tf.nn.softmax(logits),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": tf.reduce_sum(self._logits(inputs), axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="x")])
        def predict(self, x):
            return {"y": tf.matmul(x, self.w)}

    m = Model()
    tf.saved_model.save(
        m, path, signatures={"serving_default": m.classify, "regress": m.regress, "predict": m.predict}
    )


if __name__ == "__main__":
    import sys

    from tfs_models import build_keras  # the same Keras export as the other modules' (run from this folder)

    {"tf1": build_tf1, "tf2": build_tf2, "keras": build_keras}[sys.argv[1]](
        sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0
    )
