"""The KServe protocol codec without a server: V1 and V2 requests to feeds and back, and every
bad request (shape, dtype, names) as the client's error (``BadRequestError``, 400)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput  # noqa: E402

from yellowstone.errors import BadRequestError  # noqa: E402
from yellowstone.plugins.kserve import codec  # noqa: E402
from yellowstone.spec import TensorSpec  # noqa: E402

X = TensorSpec(name="x", shape=(None, 16), dtype="float32")
IDS = TensorSpec(name="ids", shape=(None, 4), dtype="int64")


@pytest.fixture
def rng():
    return np.random.default_rng()


def _v2(*inputs: InferInput, outputs: list[str] | None = None, **parameters) -> InferRequest:
    req = InferRequest(model_name="m", infer_inputs=list(inputs), parameters=parameters or None)
    if outputs:
        req.request_outputs = [RequestedOutput(name=n) for n in outputs]
    return req


def _input(name: str, arr: np.ndarray, datatype: str, *, binary: bool = False,
           shape: list | None = None) -> InferInput:
    inp = InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    if shape is not None:
        inp._shape = shape  # what a client put in the request, whatever the data
    return inp


# -- V1 ---------------------------------------------------------------------------------------
def test_v1_instances_one_input(rng):
    x = rng.standard_normal((3, 16)).astype(np.float32)
    feeds = codec.decode_v1({"instances": x.tolist()}, [X])
    assert feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], x)


def test_v1_instances_by_name_and_columnar(rng):
    x = rng.standard_normal((2, 16)).astype(np.float32)
    ids = rng.integers(1, 100, (2, 4))
    rows = [{"x": xr.tolist(), "ids": ir.tolist()} for xr, ir in zip(x, ids)]
    for body in ({"instances": rows}, {"inputs": {"x": x.tolist(), "ids": ids.tolist()}}):
        feeds = codec.decode_v1(body, [X, IDS])
        np.testing.assert_array_equal(feeds["x"], x)
        np.testing.assert_array_equal(feeds["ids"], ids)
        assert feeds["ids"].dtype == np.int64


def test_v1_body_as_json_text(rng):
    import json

    x = rng.standard_normal((1, 16)).astype(np.float32)
    feeds = codec.decode_v1(json.dumps({"instances": x.tolist()}).encode(), [X])
    np.testing.assert_array_equal(feeds["x"], x)


@pytest.mark.parametrize("body", [
    b"{not json",
    [1, 2],
    {"rows": []},
    {"instances": []},
    {"instances": [{"x": ["a"] * 16, "ids": [1, 2, 3, 4]}]},
    {"instances": [{"x": [0.5] * 16, "ids": [0.5, 1.5, 2.5, 3.5]}]},
    {"instances": [{"x": [0.5] * 16, "nope": [1]}]},
    {"instances": [{"x": [0.5] * 16, "ids": [1] * 4}, {"x": [0.5] * 16}]},
    {"instances": [[1.0, 2.0]]},
    {"inputs": {"y": [1.0]}},
    {"inputs": [[1.0] * 16]},
    {"instances": [{"x": [[1.0], [1.0, 2.0]], "ids": [1] * 4}]},
], ids=["not-json", "not-object", "no-instances", "empty", "strings", "fractions", "unknown",
        "missing", "unnamed", "unknown-col", "unnamed-col", "ragged"])
def test_v1_bad_requests(body):
    with pytest.raises(BadRequestError):
        codec.decode_v1(body, [X, IDS])


def test_v1_encode_rows_and_columns(rng):
    y = rng.standard_normal((2, 3)).astype(np.float32)
    s = rng.standard_normal((2,)).astype(np.float32)
    assert codec.encode_v1([y], ["y"], rows=True) == {"predictions": y.tolist()}
    rows = codec.encode_v1([y, s], ["y", "s"], rows=True)["predictions"]
    assert rows == [{"y": y[i].tolist(), "s": s[i].item()} for i in range(2)]
    cols = codec.encode_v1([y, s], ["y", "s"], rows=False)["predictions"]
    assert cols == {"y": y.tolist(), "s": s.tolist()}
    words = codec.encode_v1([np.array([b"a", b"b"], dtype=object)], ["w"], rows=True)
    assert words == {"predictions": ["a", "b"]}


# -- V2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [False, True])
def test_v2_decode(rng, binary):
    x = rng.standard_normal((2, 16)).astype(np.float32)
    ids = rng.integers(1, 100, (2, 4)).astype(np.int64)
    feeds = codec.decode_v2(_v2(_input("x", x, "FP32", binary=binary),
                                _input("ids", ids, "INT64", binary=binary)), [X, IDS])
    np.testing.assert_array_equal(feeds["x"], x)
    np.testing.assert_array_equal(feeds["ids"], ids)
    assert (feeds["x"].dtype, feeds["ids"].dtype) == (np.float32, np.int64)


@pytest.mark.parametrize("shape", [[-1, 16], [1, -16], [1.5, 16], [True, 16], ["1", 16], "1x16"])
def test_v2_bad_shape_dimension(rng, shape):
    """-1 is metadata's "any size", never a request's: [-1, 16] is a 400, not a reshape."""
    x = rng.standard_normal((1, 16)).astype(np.float32)
    with pytest.raises(BadRequestError, match="shape"):
        codec.decode_v2(_v2(_input("x", x, "FP32", shape=shape)), [X])


def test_v2_data_does_not_fit_shape():
    short = InferInput("x", [2, 16], "FP32", data=[0.5] * 10)
    with pytest.raises(BadRequestError, match="does not fit shape"):
        codec.decode_v2(_v2(short), [X])


@pytest.mark.parametrize("case", ["dtype", "unknown", "twice"])
def test_v2_bad_names_and_types(rng, case):
    x = rng.standard_normal((1, 16))
    inputs = {"dtype": [_input("x", x, "FP64")],
              "unknown": [_input("y", x.astype(np.float32), "FP32")],
              "twice": [_input("x", x.astype(np.float32), "FP32")] * 2}[case]
    with pytest.raises(BadRequestError):
        codec.decode_v2(_v2(*inputs), [X])


def test_v2_requested_outputs():
    codec.requested_outputs(_v2(outputs=["y"]), ["y", "s"])
    with pytest.raises(BadRequestError, match="unknown output"):
        codec.requested_outputs(_v2(outputs=["z"]), ["y", "s"])


@pytest.mark.parametrize("binary", [False, True])
def test_v2_encode(rng, binary):
    y = rng.standard_normal((2, 3)).astype(np.float32)
    label = rng.integers(0, 5, (2,)).astype(np.int64)
    req = _v2(_input("x", rng.standard_normal((2, 16)).astype(np.float32), "FP32"),
              binary_data_output=binary)
    assert req.use_binary_outputs == binary
    resp = codec.encode_v2(req, "m", [y, label], ["y", "label"],
                           parameters={"yellowstone_backend": "onnxruntime"})
    out_y, out_label = resp.get_output_by_name("y"), resp.get_output_by_name("label")
    assert (out_y.datatype, list(out_y.shape)) == ("FP32", [2, 3])
    assert (out_label.datatype, list(out_label.shape)) == ("INT64", [2])
    np.testing.assert_array_equal(out_y.as_numpy(), y)
    np.testing.assert_array_equal(out_label.as_numpy(), label)
    assert resp.parameters["yellowstone_backend"] == "onnxruntime"


def test_metadata_and_datatypes():
    assert codec.tensor_metadata("x", (None, "seq", 16), "float32") == {
        "name": "x", "datatype": "FP32", "shape": [-1, -1, 16]}
    assert [codec.v2_datatype(d) for d in ("int64", np.dtype("bool"), "bytes", "<U3")] == [
        "INT64", "BOOL", "BYTES", "BYTES"]
    with pytest.raises(BadRequestError):
        codec.v2_datatype("complex64")
