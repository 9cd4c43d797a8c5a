"""Small SavedModels for the TF Serving tests: a Keras export, a TF1 graph, a variable-length text model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_keras(path: str, seed: int = 0) -> None:
    """A tiny Keras MLP exported with ``model.export()`` (signature serving_default, input x)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((8,), name="x")
    h = tf.keras.layers.Dense(16, activation="relu")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3)(h))
    model.export(path, verbose=False)


def build_tf1(path: str) -> None:
    """A TF1 graph: predict {a, b} -> {y, s}, plus classify and regress over tf.Example."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        a = v1.placeholder(tf.float32, [None, 4], name="a")
        b = v1.placeholder(tf.float32, [None, 4], name="b")
        w = v1.get_variable("w", initializer=tf.random.normal([4, 3], seed=1))
        y = tf.nn.tanh(tf.matmul(a * 2.0 + b, w))
        s = tf.reduce_sum(a * b, axis=1, keepdims=True)
        ser = v1.placeholder(tf.string, [None], name="tf_example")
        feats = tf.io.parse_example(ser, {"x": tf.io.FixedLenFeature([4], tf.float32)})
        logits = tf.matmul(feats["x"], w)
        scores = tf.nn.softmax(logits)
        classes = tf.tile(tf.constant([["c0", "c1", "c2"]]), [tf.shape(ser)[0], 1])
        reg = tf.reduce_sum(logits, axis=1)
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "serving_default": v1.saved_model.predict_signature_def(
                        {"a": a, "b": b}, {"y": y, "s": s}
                    ),
                    "classify": v1.saved_model.classification_signature_def(ser, classes, scores),
                    "regress": v1.saved_model.regression_signature_def(ser, reg),
                },
            )
            builder.save()


VOCAB = 50


def build_text(path: str) -> None:
    """A text model over input_ids and attention_mask, both int32 [-1, -1].

    serving_default: ``tokens`` [b, len, 4] (zero where the mask is) and ``pooled`` [b, 4] (the
    masked mean); ``raw`` takes the same inputs and gives ``tokens`` only (never boosted).
    """
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]

    class Text(tf.Module):
        def __init__(self):
            super().__init__()
            g = tf.random.Generator.from_seed(11)
            self.emb = tf.Variable(g.normal((VOCAB, 8)))
            self.w = tf.Variable(g.normal((8, 4)))

        def _tokens(self, input_ids, attention_mask):
            h = tf.gather(self.emb, input_ids)
            mask = tf.cast(attention_mask, tf.float32)[..., None]
            return tf.tanh(tf.einsum("bld,dk->blk", h, self.w)) * mask, mask

        @tf.function(input_signature=spec)
        def serve(self, input_ids, attention_mask):
            tokens, mask = self._tokens(input_ids, attention_mask)
            pooled = tf.reduce_sum(tokens, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            return {"tokens": tokens, "pooled": pooled}

        @tf.function(input_signature=spec)
        def raw(self, input_ids, attention_mask):
            return {"tokens": self._tokens(input_ids, attention_mask)[0]}

    m = Text()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve, "raw": m.raw})


if __name__ == "__main__":
    import sys

    {"keras": build_keras, "tf1": build_tf1, "text": build_text}[sys.argv[1]](sys.argv[2])
