"""The per-call path of a boosted torch model: inputs to numpy, outputs back, the timing series.

Each step has a fast form for the common case (a plain CPU tensor in, one tensor out, a series
keyed once); these tests hold the fast forms to what the general ones return.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from yellowstone import metrics
from yellowstone.model import TorchModel, to_numpy

torch = pytest.importorskip("torch")


def test_plain_tensor_is_viewed_not_copied():
    t = torch.randn(2, 3)
    a = to_numpy(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert np.shares_memory(a, t.numpy())


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 3, requires_grad=True),
    lambda: torch.randn(2, 3).to(torch.bfloat16),
    lambda: torch.nn.Parameter(torch.randn(2, 3)),
    lambda: torch.randn(3, 2).t(),  # not contiguous
])
def test_other_tensors_take_the_general_path(make):
    t = make()
    a = to_numpy(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, t.detach().float().numpy())


class _Outputs(torch.nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form

    def forward(self, x):
        if self.form == "tensor":
            return x * 2
        if self.form == "tuple":
            return x * 2, x + 1
        return {"double": x * 2, "plus": x + 1}


@pytest.mark.parametrize("form", ["tensor", "tuple", "dict"])
def test_outputs_come_back_as_the_module_returns_them(form):
    x = torch.randn(2, 3)
    handle = TorchModel(_Outputs(form), (x,))
    flat = [o.numpy() for o in torch.utils._pytree.tree_flatten(_Outputs(form)(x))[0]]
    out = handle.wrap_outputs(flat, (x,), {})
    ref = _Outputs(form)(x)
    if form == "tensor":
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, ref)
    elif form == "tuple":
        assert isinstance(out, tuple) and len(out) == 2
        for o, r in zip(out, ref):
            torch.testing.assert_close(o, r)
    else:
        assert isinstance(out, dict) and list(out) == ["double", "plus"]
        for k in out:
            torch.testing.assert_close(out[k], ref[k])


def test_series_records_what_emit_records():
    model = f"m-{uuid.uuid4().hex[:8]}"
    seen: list[tuple] = []

    def listener(name, value, unit, labels):
        seen.append((name, value, unit, dict(labels)))

    metrics.add_listener(listener)
    try:
        series = metrics.Series(metrics.INFERENCE_MS, "ms", model=model, backend="b")
        series.emit(2.5)
        metrics.emit(metrics.INFERENCE_MS, 4.0, "ms", backend="b", model=model)
        series.emit(1.5)
    finally:
        metrics.remove_listener(listener)
    key = metrics.INFERENCE_MS + "{backend=b,model=" + model + "}"
    assert metrics.snapshot()[key] == 1.5  # one series, the last value
    row = next(r for r in metrics.series() if r[2] == {"backend": "b", "model": model})
    assert row[4] == (3, 8.0)  # count and sum over both forms
    assert [s[1] for s in seen if s[3].get("model") == model] == [2.5, 4.0, 1.5]
    assert all(s[3] == {"model": model, "backend": "b"} for s in seen if s[3].get("model") == model)
    with pytest.raises(TypeError):
        series.labels["model"] = "other"  # type: ignore[index]


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int64", "int32", "uint8",
                                   "bool"])
@pytest.mark.parametrize("shape", [(1, 1000), (3, 5), (7,), (), (0, 4)])
def test_tf_outputs_equal_tf_constant(dtype, shape):
    tf = pytest.importorskip("tensorflow")
    from yellowstone.model import tf_tensor

    # views at every offset of a buffer: the source alignment must not matter
    n = int(np.prod(shape))
    for offset in range(4):
        base = (np.random.default_rng(offset).random(n + 16) * 10 + 1).astype(dtype)
        array = base[offset:offset + n].reshape(shape)
        got = tf_tensor(array)
        ref = tf.constant(array)
        assert isinstance(got, tf.Tensor) and got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got.numpy(), array)
        if dtype != "bool" and array.size:
            np.testing.assert_array_equal((got + got).numpy(), (ref + ref).numpy())
        array[...] = 0  # the tensor holds its own copy
        np.testing.assert_array_equal(got.numpy(), ref.numpy())


def test_tf_outputs_of_other_dtypes_go_by_constant():
    tf = pytest.importorskip("tensorflow")
    from yellowstone.model import tf_tensor

    got = tf_tensor(np.array([b"a", b"bc"]))
    assert got.dtype == tf.string and got.numpy().tolist() == [b"a", b"bc"]
