"""The NumPy V2 REST decoder against KServe's own decoder on the same bytes, and every bad body
(shape, length, header, datatype) as the client's error (``BadRequestError``, 400)."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

pytest.importorskip("kserve", reason="kserve is not installed (pip install 'yellowstone[kserve]')")

from kserve.protocol.infer_type import InferInput, InferRequest  # noqa: E402
from kserve.protocol.rest.v2_datamodels import InferenceRequest  # noqa: E402

from yellowstone.errors import BadRequestError  # noqa: E402
from yellowstone.plugins.kserve import v2rest  # noqa: E402

HEADER = "inference-header-content-length"
SHAPES = [[1, 3, 4, 5], [2, 16], [7], [0, 4], []]


def _tensor(rng, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        words = [bytes(rng.integers(0, 256, rng.integers(0, 9)).astype(np.uint8))
                 for _ in range(int(np.prod(shape)))]
        words = [w.decode("latin-1").encode("utf-8") for w in words]  # KServe's REST wants UTF-8
        arr = np.empty(len(words), dtype=object)
        arr[:] = words
        return arr.reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if datatype in ("FP16", "FP32", "FP64"):
        return rng.standard_normal(shape).astype({"FP16": np.float16, "FP32": np.float32,
                                                  "FP64": np.float64}[datatype])
    dtype = np.dtype(datatype.lower())
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, dtype=dtype)


def _binary_body(tensors: dict[str, tuple[str, np.ndarray]], **extra) -> tuple[bytes, int]:
    """A binary-extension body as KServe's own client writes it: (body, JSON length)."""
    inputs = []
    for name, (datatype, arr) in tensors.items():
        inp = InferInput(name, list(arr.shape), datatype)
        inp.set_data_from_numpy(arr, binary_data=True)
        inputs.append(inp)
    req = InferRequest(model_name="m", infer_inputs=inputs, request_id="r1", **extra)
    body, json_length = req.to_rest()
    return body, json_length


def _kserve_array(inp: InferInput) -> np.ndarray:
    arr = inp.as_numpy()
    if inp.datatype == "BYTES":  # KServe's REST decoder turns BYTES into str (UTF-8)
        arr = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v,
                           otypes=[object])(arr) if arr.size else arr
    return arr


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert ours.tolist() == theirs.tolist()


@pytest.fixture
def rng():
    return np.random.default_rng()


# -- binary tensors: the same arrays as KServe's from_bytes ---------------------------------------
@pytest.mark.parametrize("shape", [s for s in SHAPES if 0 not in s], ids=str)  # KServe's client
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL", "BYTES", "FP16", "UINT8", "INT32",
                                      "FP64"])  # sends no empty binary tensor
def test_binary_matches_kserve(rng, datatype, shape):
    arr = _tensor(rng, datatype, shape)
    body, json_length = _binary_body({"t": (datatype, arr)})
    theirs = InferRequest.from_bytes(body, json_length, "m")
    ours = v2rest.decode_request(body, {HEADER: str(json_length)}, "m")
    assert (ours.id, ours.model_name, ours.inputs[0].name) == ("r1", "m", "t")
    assert (ours.inputs[0].datatype, ours.inputs[0].shape) == (datatype, shape)
    _same(ours.inputs[0].as_numpy(), _kserve_array(theirs.inputs[0]))
    np.testing.assert_array_equal(ours.inputs[0].as_numpy(), arr)


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL", "BYTES"])
def test_binary_empty_tensor(datatype):
    header = orjson.dumps({"inputs": [
        {"name": "t", "shape": [0, 4], "datatype": datatype, "parameters": {"binary_data_size": 0}},
        {"name": "u", "shape": [1], "datatype": "INT8", "parameters": {"binary_data_size": 1}}]})
    req = v2rest.decode_request(header + b"\x05", {HEADER: str(len(header))}, "m")
    got = req.inputs[0].as_numpy()
    assert got.shape == (0, 4) and got.dtype == v2rest.WIRE_DTYPES[datatype].newbyteorder("=")
    assert req.inputs[1].as_numpy().tolist() == [5]


def test_binary_several_inputs_and_outputs(rng):
    x = rng.standard_normal((2, 16)).astype(np.float32)
    ids = rng.integers(0, 50, (2, 4))
    from kserve.protocol.infer_type import RequestedOutput

    outs = [RequestedOutput("scores", {"binary_data": True}), RequestedOutput("label")]
    body, json_length = _binary_body({"x": ("FP32", x), "ids": ("INT64", ids)},
                                     parameters={"binary_data_output": True},
                                     request_outputs=outs)
    theirs = InferRequest.from_bytes(body, json_length, "m")
    ours = v2rest.decode_request(body, {HEADER: str(json_length)}, "m")
    for a, b in zip(ours.inputs, theirs.inputs):
        _same(a.as_numpy(), b.as_numpy())
    assert ours.parameters == theirs.parameters and ours.use_binary_outputs
    assert [(o.name, o.binary_data) for o in ours.request_outputs] == [
        (o.name, o.binary_data) for o in theirs.request_outputs]


def test_binary_is_little_endian_row_major():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5
    ids = np.array([[1, -2], [3, 2**40]], dtype=np.int64)
    raw = b"".join(struct.pack("<f", v) for v in x.ravel(order="C"))
    raw += b"".join(struct.pack("<q", v) for v in ids.ravel(order="C"))
    header = orjson.dumps({"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
        {"name": "ids", "shape": [2, 2], "datatype": "INT64",
         "parameters": {"binary_data_size": 32}}]})
    req = v2rest.decode_request(header + raw, {HEADER: str(len(header))}, "m")
    np.testing.assert_array_equal(req.inputs[0].as_numpy(), x)
    np.testing.assert_array_equal(req.inputs[1].as_numpy(), ids)


def test_binary_bytes_need_not_be_utf8():
    """KServe's own REST decoder fails on these (it turns BYTES into str); gRPC does not."""
    words = [b"\xff\x00", b"", b"abc"]
    raw = b"".join(struct.pack("<I", len(w)) + w for w in words)
    header = orjson.dumps({"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(raw)}}]})
    req = v2rest.decode_request(header + raw, {HEADER: str(len(header))}, "m")
    assert req.inputs[0].as_numpy().tolist() == words


# -- JSON data: the same arrays as KServe's from_inference_request --------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BOOL", "BYTES", "INT8", "FP64"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_json_matches_kserve(rng, datatype, shape, nested):
    arr = _tensor(rng, datatype, shape)
    if datatype == "BYTES":
        arr = np.vectorize(lambda b: b.decode(), otypes=[object])(arr) if arr.size else arr
    data = arr.tolist() if nested and shape else arr.ravel().tolist()
    body = {"id": "r2", "inputs": [{"name": "t", "shape": shape, "datatype": datatype,
                                    "data": data}]}
    theirs = InferRequest.from_inference_request(InferenceRequest.model_validate(body), "m")
    ours = v2rest.decode_request(orjson.dumps(body), {"content-type": "application/json"}, "m")
    assert ours.id == "r2"
    _same(ours.inputs[0].as_numpy(), theirs.inputs[0].as_numpy().astype(
        np.dtype(object) if datatype == "BYTES" else theirs.inputs[0].as_numpy().dtype))


def test_json_without_content_type_and_integral_float_dimensions():
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [2.0, 2], "datatype": "fp32",
                                     "data": [1, 2.5, True, 4]}]})
    inp = v2rest.decode_request(body, {}, "m").inputs[0]
    assert (inp.datatype, inp.shape) == ("FP32", [2, 2])
    np.testing.assert_array_equal(inp.as_numpy(), np.array([[1, 2.5], [1, 4]], np.float32))


# -- the client's errors --------------------------------------------------------------------------
def _binary_error(header: dict, raw: bytes, json_length: int | None = None) -> str:
    head = orjson.dumps(header)
    length = len(head) if json_length is None else json_length
    with pytest.raises(BadRequestError) as info:
        v2rest.decode_request(head + raw, {HEADER: str(length)}, "m")
    assert info.value.http_status == 400
    return str(info.value)


def _fp32(shape, size, **extra) -> dict:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32",
                        "parameters": {"binary_data_size": size}, **extra}]}


@pytest.mark.parametrize("shape", [[-1, 16], [1.5, 16], [True, 16], ["1", 16], "16", None])
def test_bad_binary_shape(shape):
    assert "shape" in _binary_error(_fp32(shape, 64), b"\0" * 64)


@pytest.mark.parametrize(("shape", "size", "raw", "words"), [
    ([1, 16], 60, 60, "do not fit"),                 # fewer bytes than the shape needs
    ([1, 16], 68, 68, "do not fit"),                 # more
    ([1, 16], 64, 32, "runs past the end"),          # binary_data_size past the body
    ([1, 16], 64, 70, "after the last binary input"),  # bytes left over
    ([1, 16], -4, 64, "binary_data_size"),
    ([1, 16], 6.5, 64, "binary_data_size"),
])
def test_bad_binary_lengths(shape, size, raw, words):
    assert words in _binary_error(_fp32(shape, size), b"\0" * raw)


@pytest.mark.parametrize("value", ["abc", "-1", "999999"])
def test_bad_header_length(value):
    head = orjson.dumps(_fp32([1, 4], 16))
    with pytest.raises(BadRequestError, match=HEADER):
        v2rest.decode_request(head + b"\0" * 16, {HEADER: value}, "m")


def test_bad_header_json():
    head = orjson.dumps(_fp32([1, 4], 16))
    with pytest.raises(BadRequestError, match="JSON"):
        v2rest.decode_request(head + b"\0" * 16, {HEADER: str(len(head) - 3)}, "m")


@pytest.mark.parametrize(("raw", "count", "words"), [
    (struct.pack("<I", 3) + b"abc" + b"\x01\x00", 2, "length prefix"),
    (struct.pack("<I", 9) + b"abc", 1, "says 9 bytes"),
    (struct.pack("<I", 1) + b"a", 2, "do not fit"),
])
def test_bad_bytes_elements(raw, count, words):
    header = {"inputs": [{"name": "s", "shape": [count], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(raw)}}]}
    assert words in _binary_error(header, raw)


@pytest.mark.parametrize(("inp", "words"), [
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0]}, "do not fit"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": ["a", "b"]}, "strings"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, None]}, "numbers"),
    ({"name": "x", "shape": [2], "datatype": "INT64", "data": [0.5, 1]}, "fractions"),
    ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300]}, "range"),
    ({"name": "x", "shape": [2], "datatype": "BOOL", "data": [1, 0]}, "booleans"),
    ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1.0], [2.0, 3.0]]}, "tensor"),
    ({"name": "x", "shape": [2], "datatype": "FP16", "data": [1.0, 2.0]}, "FP16"),
    ({"name": "x", "shape": [2], "datatype": "FP8", "data": [1.0, 2.0]}, "datatype"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": 3.0}, "must be a list"),
    ({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1.0]}, "shape"),
    ({"name": "x", "shape": [2], "datatype": "FP32"}, "'data' field is missing"),
    ({"shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}, "'name'"),
])
def test_bad_json_inputs(inp, words):
    with pytest.raises(BadRequestError, match=words):
        v2rest.decode_request(orjson.dumps({"inputs": [inp]}), {}, "m")


@pytest.mark.parametrize(("body", "headers", "words"), [
    (b'{"inputs": [', {"content-type": "application/json"}, "JSON"),
    (b"[1, 2]", {}, "JSON object"),
    (b'{"inputs": {}}', {}, "'inputs' must be a list"),
    (b'{"id": 7, "inputs": []}', {}, "'id'"),
    (b'{"inputs": [], "parameters": [1]}', {}, "parameters"),
    (b'{"inputs": [], "outputs": [{"parameters": {}}]}', {}, "'outputs'"),
    (b'{"inputs": []}', {"content-type": "application/octet-stream"}, HEADER),
])
def test_bad_bodies(body, headers, words):
    with pytest.raises(BadRequestError, match=words):
        v2rest.decode_request(body, headers, "m")


def test_kserve_own_decoder_fails_these_with_a_server_error():
    """What the NumPy decoder answers with 400, KServe 0.21's decoder fails with a 500."""
    from kserve.errors import InferenceError

    for shape in ([-1, 16], [1.5, 16]):
        head = orjson.dumps(_fp32(shape, 64))
        with pytest.raises((InferenceError, TypeError)):
            InferRequest.from_bytes(head + b"\0" * 64, len(head), "m")
