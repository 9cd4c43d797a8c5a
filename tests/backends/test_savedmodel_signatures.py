"""A SavedModel with several signatures: each boosts its own function; shipped files are not the model."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone
from yellowstone.model import SAVED_MODEL_PARTS, _hash_files, load_model

from ..conftest import requires

pytestmark = pytest.mark.slow


def _two_signature_model(path):
    import tensorflow as tf

    class Two(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.normal([4, 3]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def main(self, x):
            return {"y": tf.matmul(x, self.w)}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def other(self, x):
            return {"a": tf.nn.relu(tf.matmul(x, self.w)),
                    "b": tf.reduce_sum(x, axis=1, keepdims=True)}

    m = Two()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.main, "other": m.other})
    return path


@requires("tensorflow")
@requires("openvino")
def test_openvino_boosts_the_named_signature_not_serving_default(tmp_path, cache_dir):
    path = _two_signature_model(tmp_path / "m")
    handle = load_model(str(path), signature="other")
    boosted = yellowstone.boost(handle, backends="openvino", time_budget_s=0.05,
                                validation_rounds=1)
    assert boosted.backend == "openvino", boosted.report.table()
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    got, want = boosted.run_dict({"x": x}), dict(zip(handle.output_names, handle.run({"x": x})))
    assert set(got) == {"a", "b"}
    for name in got:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-4)


@requires("tensorflow")
def test_files_beside_the_savedmodel_do_not_change_its_fingerprint(tmp_path):
    path = _two_signature_model(tmp_path / "m")
    before = load_model(str(path)).fingerprint
    shipped = path / "yellowstone" / "serving_default"
    shipped.mkdir(parents=True)
    (shipped / "yellowstone.json").write_text("{}")
    (path / "assets.extra").mkdir()
    (path / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\0" * 8)
    assert load_model(str(path)).fingerprint == before
    content = _hash_files(path, SAVED_MODEL_PARTS)
    (path / "variables" / "variables.index").write_bytes(b"changed")  # the weights are the model
    assert _hash_files(path, SAVED_MODEL_PARTS) != content
