"""Every model form a user may hand us goes through ``boost`` and matches its framework."""

from __future__ import annotations

import numpy as np
import pytest

import yellowstone

from ..conftest import requires
from .models import build

OPTS = dict(backends="onnxruntime,openvino", time_budget_s=0.05, validation_rounds=1,
            batch_sizes=(1, 4))
pytestmark = pytest.mark.slow


def _check(boosted, reference, feeds, atol=1e-4):
    got = boosted.run(feeds)
    assert boosted.backend in ("onnxruntime", "openvino", "native")
    for g, r in zip(got, reference(feeds)):
        np.testing.assert_allclose(g, r, atol=atol, rtol=1e-3)


@requires("torch")
def test_nn_module_call_keeps_types_and_structure(cache_dir):
    import torch

    model, example = build("two_in_two_out")
    boosted = yellowstone.boost(model, example, **OPTS)
    assert boosted.backend != "native", boosted.report.table()
    left, right = torch.randn(3, 8), torch.randn(3, 6)
    out = boosted(left, right)
    ref = model(left, right)
    assert isinstance(out, dict) and list(out) == ["scores", "embedding"]
    for key in out:
        assert isinstance(out[key], torch.Tensor)
        torch.testing.assert_close(out[key], ref[key].detach(), atol=1e-4, rtol=1e-3)


@requires("torch")
def test_torchscript_and_export_files(cache_dir, tmp_path):
    import torch

    model, example = build("cnn")
    ts = tmp_path / "cnn.pt"
    torch.jit.trace(model, example).save(str(ts))
    pt2 = tmp_path / "cnn.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(model, example, dynamic_shapes=({0: batch},)), str(pt2))
    x = {"image": np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)}

    def reference(feeds):
        with torch.no_grad():
            return [model(torch.from_numpy(feeds["image"])).numpy()]

    for path in (ts, pt2):
        boosted = yellowstone.boost(str(path), example, input_specs=None, **OPTS)
        assert [s.name for s in boosted.inputs] in (["image"], ["x"]), boosted.inputs
        name = boosted.inputs[0].name
        assert boosted.backend != "native", boosted.report.table()
        _check(boosted, reference, {name: x["image"]} if name != "image" else x)


@requires("torch")
def test_export_program_keeps_its_own_dynamic_batch_range():
    import torch

    from yellowstone.model import load_model

    model, example = build("cnn")
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    handle = load_model(program, example)
    assert handle.exported_program(dynamic_batch=True) is program  # not re-exported to 1..4096


@requires("onnxruntime")
def test_onnx_file_needs_no_examples(cache_dir, tmp_path):
    import torch

    model, example = build("mlp")
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, example, str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    boosted = yellowstone.boost(str(path), **OPTS)
    assert boosted.output_names == ("logits",) and boosted.handle.batched
    x = {"x": np.random.default_rng(1).standard_normal((5, 32)).astype(np.float32)}
    _check(boosted, lambda f: [model(torch.from_numpy(f["x"])).detach().numpy()], x)


@requires("tensorflow")
def test_keras_model_and_saved_model(cache_dir, tmp_path):
    import tensorflow as tf

    inp_a = tf.keras.Input((5,), name="a")
    inp_b = tf.keras.Input((3,), name="b")
    h = tf.keras.layers.Dense(8, activation="relu")(tf.keras.layers.Concatenate()([inp_a, inp_b]))
    model = tf.keras.Model([inp_a, inp_b], [tf.keras.layers.Dense(2)(h),
                                            tf.keras.layers.Dense(4, activation="softmax")(h)])
    rng = np.random.default_rng(2)
    feeds = {"a": rng.standard_normal((3, 5)).astype(np.float32),
             "b": rng.standard_normal((3, 3)).astype(np.float32)}
    boosted = yellowstone.boost(model, {"a": feeds["a"][:2], "b": feeds["b"][:2]}, **OPTS)
    assert boosted.backend != "native", boosted.report.table()
    out = boosted(feeds["a"], feeds["b"])
    ref = model([feeds["a"], feeds["b"]])
    for o, r in zip(out, ref):
        np.testing.assert_allclose(np.asarray(o), r.numpy(), atol=1e-5, rtol=1e-4)

    keras_file = tmp_path / "m.keras"
    model.save(keras_file)
    from_file = yellowstone.boost(str(keras_file), {"a": feeds["a"], "b": feeds["b"]}, **OPTS)
    for g, r in zip(from_file.run(feeds), ref):
        np.testing.assert_allclose(g, r.numpy(), atol=1e-5, rtol=1e-4)

    model.export(str(tmp_path / "sm"), verbose=False)
    saved = yellowstone.boost(str(tmp_path / "sm"), **OPTS)
    assert {s.name for s in saved.inputs} == {"a", "b"}
    got = saved.run_dict(feeds)
    assert len(got) == 2
    flat = sorted((v.shape, v.sum()) for v in got.values())
    want = sorted((r.numpy().shape, r.numpy().sum()) for r in ref)
    for (gs, gsum), (ws, wsum) in zip(flat, want):
        assert gs == ws and abs(gsum - wsum) < 1e-3


@requires("onnxruntime")
@pytest.mark.parametrize("workers", [1, 2])
def test_onnxruntime_threads_follow_the_worker_layout(cache_dir, workers):
    from yellowstone.hardware import available_cores

    model, example = build("mlp")
    boosted = yellowstone.boost(model, example, **{**OPTS, "backends": "onnxruntime"},
                                workers=workers)
    assert boosted.backend == "onnxruntime", boosted.report.table()
    (compiled,) = boosted._compiled.values()
    opts = compiled.session.get_session_options()
    want = max(1, available_cores() // workers) if workers > 1 else 0
    assert opts.intra_op_num_threads == want
    try:
        spinning = opts.get_session_config_entry("session.intra_op.allow_spinning")
    except Exception:  # noqa: BLE001 - unset: ONNX Runtime's default (spin)
        spinning = "unset"
    assert spinning == ("0" if workers > 1 else "unset")
