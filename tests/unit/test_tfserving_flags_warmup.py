"""``--enable_model_warmup``: PredictionLog records replayed on a (fake) servable, TF Serving's errors."""

from __future__ import annotations

import numpy as np
import pytest

from yellowstone.plugins.tfserving.errors import ServingError
from yellowstone.plugins.tfserving.monitoring import ServingMetrics
from yellowstone.plugins.tfserving.warmup import run_warmup, warmup_file

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tensorflow


class Recorder:
    def __init__(self):
        self.calls = []

    def predict(self, key, inputs, output_filter=()):
        self.calls.append(("predict", key, {k: tf.make_ndarray(v) for k, v in inputs.items()}))
        return {}

    def classify(self, key, input_proto):
        self.calls.append(("classify", key, len(input_proto.example_list.examples)))

    def regress(self, key, input_proto):
        self.calls.append(("regress", key, len(input_proto.example_list.examples)))


def _write(path, logs):
    f = warmup_file(path)
    f.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(f)) as w:
        for log in logs:
            w.write(log.SerializeToString())


def test_records_are_replayed_each_iteration(tmp_path):
    from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

    x = np.random.default_rng().standard_normal((2, 3)).astype(np.float32)
    predict = predict_pb2.PredictRequest()
    predict.model_spec.signature_name = "sig"
    predict.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    classify = classification_pb2.ClassificationRequest()
    classify.input.example_list.examples.add()
    logs = [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict)),
            prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify))]
    _write(tmp_path, logs)
    servable, metrics = Recorder(), ServingMetrics()
    assert run_warmup(servable, tmp_path, iterations=2, metrics=metrics) == 2
    assert [c[:2] for c in servable.calls] == [("predict", "sig")] * 2 + [("classify", "")] * 2
    np.testing.assert_array_equal(servable.calls[0][2]["x"], x)
    counts, _ = metrics.warmup_latency.value(str(tmp_path), "OK")
    assert sum(counts) == 1
    assert run_warmup(Recorder(), tmp_path / "elsewhere") == 0  # no file: nothing to do


def test_unsupported_and_corrupt_records_fail_the_load(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    _write(tmp_path / "a", [prediction_log_pb2.PredictionLog(
        session_run_log=prediction_log_pb2.SessionRunLog())])
    with pytest.raises(ServingError) as info:
        run_warmup(Recorder(), tmp_path / "a")
    assert (info.value.code, info.value.message) == ("UNIMPLEMENTED", "Unsupported log_type for warmup: 5")
    bad = warmup_file(tmp_path / "b")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"this is not a TFRecord file at all")
    with pytest.raises(ServingError) as info:
        run_warmup(Recorder(), tmp_path / "b")
    assert info.value.code == "DATA_LOSS"
    assert info.value.message.endswith("Please verify your warmup data is in TFRecord format.")
