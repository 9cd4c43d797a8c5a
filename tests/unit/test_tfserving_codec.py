"""TF Serving's wire formats without a server: TensorProto <-> numpy, REST JSON as json_tensor.cc reads it.

TensorFlow's own ``make_tensor_proto`` / ``make_ndarray`` are the reference for the protos; the
JSON cases and their error texts come from TF Serving's json_tensor.cc and its tests.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorflow]

tf = pytest.importorskip(
    "tensorflow", reason="tensorflow is not installed (pip install 'yellowstone[tfserving]')"
)

from yellowstone.plugins.tfserving import codec  # noqa: E402
from yellowstone.plugins.tfserving.errors import ServingError  # noqa: E402

NUMERIC = [
    "float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool",
]  # fmt: skip
DT = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "string": 7,
      "int64": 9, "bool": 10, "uint16": 17, "half": 19, "uint32": 22, "uint64": 23}  # fmt: skip


def _random(rng, dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dt)


def _proto():
    from tensorflow.core.framework import tensor_pb2

    return tensor_pb2.TensorProto()


def _parse(body: bytes | str):
    return codec.parse_json(body if isinstance(body, bytes) else body.encode())


def _error(fn, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------------------ TensorProto
@pytest.mark.parametrize("dtype", NUMERIC)
def test_tensorflow_protos_decode(dtype):
    rng = np.random.default_rng()
    arr = _random(rng, dtype, (3, 5))
    got = codec.to_ndarray(tf.make_tensor_proto(arr))
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("content", [False, True])
def test_encoded_protos_read_back_in_tensorflow(dtype, content):
    rng = np.random.default_rng()
    arr = _random(rng, dtype, (2, 3, 4))
    proto = codec.to_tensor_proto(arr, _proto(), content=content)
    assert proto.dtype == codec.dt_of(arr)
    assert bool(proto.tensor_content) == content  # AsProtoField by default, as TF Serving answers
    back = tf.make_ndarray(proto)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_array_equal(codec.to_ndarray(proto), arr)


def test_typed_fields_are_what_clients_read():
    x = np.random.default_rng().standard_normal((2, 2)).astype(np.float32)
    proto = codec.to_tensor_proto(x, _proto())
    assert list(proto.float_val) == x.reshape(-1).tolist()


def test_strings_round_trip():
    arr = np.array([[b"a", b"\xff\x00"], [b"hello", b""]], dtype=object)
    proto = codec.to_tensor_proto(arr, _proto())
    assert list(tf.make_ndarray(proto).reshape(-1)) == list(arr.reshape(-1))
    got = codec.to_ndarray(tf.make_tensor_proto(arr))
    assert got.shape == (2, 2) and list(got.reshape(-1)) == list(arr.reshape(-1))


def test_bfloat16_and_complex_round_trip():
    rng = np.random.default_rng()
    bf = tf.constant(rng.standard_normal((2, 3)), dtype=tf.bfloat16).numpy()
    back = codec.to_ndarray(codec.to_tensor_proto(bf, _proto()))
    np.testing.assert_array_equal(back.astype(np.float32), bf.astype(np.float32))
    c = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    np.testing.assert_array_equal(codec.to_ndarray(tf.make_tensor_proto(c)), c)
    np.testing.assert_array_equal(tf.make_ndarray(codec.to_tensor_proto(c, _proto())), c)


def test_typed_value_fields_and_broadcast():
    p = _proto()
    p.dtype = 1
    for d in (2, 3):
        p.tensor_shape.dim.add().size = d
    x = float(np.float32(np.random.default_rng().standard_normal()))
    p.float_val.append(x)  # one value fills the shape, as TensorFlow does
    np.testing.assert_array_equal(codec.to_ndarray(p), np.full((2, 3), x, np.float32))
    p.float_val.extend([1.5, 2.5])  # fewer values than the shape: the last one repeats
    np.testing.assert_array_equal(codec.to_ndarray(p), tf.make_ndarray(p))
    s = _proto()
    s.dtype = 9
    s.tensor_shape.dim.add().size = 2
    s.int64_val.extend([7, -3])
    np.testing.assert_array_equal(codec.to_ndarray(s), np.array([7, -3], np.int64))


def test_bad_protos_are_invalid_arguments():
    p = _proto()
    p.dtype = 1
    p.tensor_shape.dim.add().size = 4
    p.tensor_content = np.ones(3, np.float32).tobytes()
    err = _error(codec.to_ndarray, p)
    assert err.code == "INVALID_ARGUMENT" and err.http_status == 400
    q = _proto()
    q.dtype = 1
    q.tensor_shape.dim.add().size = 1
    q.float_val.extend([1.0, 2.0])  # more values than the shape holds
    assert _error(codec.to_ndarray, q).code == "INVALID_ARGUMENT"
    r = _proto()
    r.dtype = 20  # DT_RESOURCE: not a wire dtype
    assert "unsupported" in _error(codec.to_ndarray, r).message


# ---------------------------------------------------------------------------------- JSON documents
@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value."),
        (b"{not json", "JSON Parse error: Missing a name for object member."),
        (b'{"instances": [1e400]}', "JSON Parse error: Number too big to be stored in double."),
        (b'{"instances": [-' + b"9" * 400 + b"]}", "Number too big to be stored in double."),
        (b"[1, 2]", "Is not object"),
        (b'{"a": "\xff"}', "Invalid encoding in string."),
        (b'{"instances": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nests arrays and objects"),
        (b'{"instances": ' + b'[{"a": ' * 3000 + b"1" + b"}]" * 3000 + b"}", "nests arrays and objects"),
    ],
)
@pytest.mark.parametrize("scan", [False, True])
def test_bad_documents_are_invalid_arguments(monkeypatch, body, text, scan):
    if scan:  # as where the interpreter's recursion limit is raised: the scan refuses past 256
        monkeypatch.setattr(codec.json_doc, "_SAFE_RECURSION", 0)
    err = _error(_parse, body)
    assert err.code == "INVALID_ARGUMENT" and err.http_status == 400
    assert text in err.message
    if scan and text == "nests arrays and objects":
        assert "deeper than 256 levels" in err.message


def test_the_depth_scan_skips_strings_and_escapes(monkeypatch):
    monkeypatch.setattr(codec.json_doc, "_SAFE_RECURSION", 0)
    tricky = json.dumps({"s": ['a"b\\"[[[' * 400, "\\\\", 'x\\\\"[['], "v": [[[1.5]]]})
    assert _parse(tricky)["v"] == [[[1.5]]]
    assert _parse('{"v": ' + "[" * 255 + "]" * 255 + "}")  # 256 levels with the object
    assert "deeper than 256 levels" in _error(_parse, '{"v": ' + "[" * 256 + "]" * 256 + "}").message


def test_tensors_past_numpys_rank_are_refused():
    value = json.loads("[" * 70 + "1.5" + "]" * 70)
    err = _error(codec.json_to_array, value, DT["float32"])
    assert err.code == "INVALID_ARGUMENT" and "rank 70" in err.message


def test_deep_nesting_inside_strings_is_fine_and_nan_is_a_number():
    doc = _parse('{"s": "' + "[" * 5000 + '", "v": [NaN, Infinity, -Infinity, 1e308]}')
    assert doc["s"] == "[" * 5000
    assert np.isnan(doc["v"][0]) and doc["v"][1:3] == [np.inf, -np.inf]


def test_big_integers_become_doubles_as_in_rapidjson():
    doc = _parse('{"a": 18446744073709551615, "b": 18446744073709551616, "c": -9223372036854775809}')
    assert doc["a"] == 2**64 - 1 and isinstance(doc["a"], int)
    assert isinstance(doc["b"], float) and isinstance(doc["c"], float)


PARITY_BODIES = [
    b'{"instances": [[1.5, -0, 2e-3, 1E5, 4.9e-325, 1.7976931348623157e308]]}',
    b'{"instances": [18446744073709551615, 18446744073709551616, -9223372036854775809, -0]}',
    '{"s": "caf\u00e9 \\u00e9 \\"q\\"", "n": null, "b": [true, false], "a": 1, "a": 2}'.encode(),
    b'{"inputs": {"x": [[1, 2], [3, 4]], "y": {"b64": "AAE="}}, "signature_name": "s"}',
    b'{"v": [NaN, Infinity, -Infinity]}',
    b'{"v": [1e400]}',
    b'{"a": "\xff"}',
    rb'{"a": "\ud800"}',  # a lone surrogate escape
    b"[1, 2]",
    b'"text"',
    b'{"x": 1} {"y": 2}',
    b'{"v": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    b"\xef\xbb\xbf{}",
]


@pytest.mark.skipif(codec.json_doc.orjson is None, reason="orjson is not installed")
@pytest.mark.parametrize("body", PARITY_BODIES)
def test_the_fast_parser_answers_as_the_exact_one(monkeypatch, body):
    """orjson's fast path gives the same document, or the same error, as the rapidjson-worded one."""

    def outcome():
        try:
            return "ok", _parse(body)
        except ServingError as exc:
            return "error", (exc.code, exc.message)

    fast = outcome()
    monkeypatch.setattr(codec.json_doc, "orjson", None)
    exact = outcome()
    assert repr(fast) == repr(exact)  # repr: NaN compares unequal to itself


# ---------------------------------------------------------------------------------- JSON tensors
@pytest.mark.parametrize("strict", [True, False])
def test_row_format_single_input(strict):
    x = np.random.default_rng().standard_normal((3, 4)).astype(np.float32)
    feeds, rows = codec.parse_predict_json({"instances": x.tolist()}, {"x": DT["float32"]}, strict=strict)
    assert rows is True and list(feeds) == ["x"]
    assert feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], x)


def test_row_scalars_make_a_vector_whatever_the_signature_declares():
    x = np.random.default_rng().standard_normal(3).astype(np.float32)
    feeds, _ = codec.parse_predict_json({"instances": x.tolist()}, {"x": DT["float32"]})
    assert feeds["x"].shape == (3,)
    np.testing.assert_array_equal(feeds["x"], x)


@pytest.mark.parametrize("strict", [True, False])
def test_row_format_named_inputs_and_columnar(strict):
    rng = np.random.default_rng()
    a = rng.standard_normal((2, 3)).astype(np.float32)
    k = rng.integers(1, 9, 2).astype(np.int64)
    inputs = {"a": DT["float32"], "k": DT["int64"]}
    rows = [{"a": a[i].tolist(), "k": int(k[i])} for i in range(2)]
    feeds, row_format = codec.parse_predict_json({"instances": rows}, inputs, strict=strict)
    assert row_format is True
    np.testing.assert_array_equal(feeds["a"], a)
    np.testing.assert_array_equal(feeds["k"], k)
    assert feeds["k"].dtype == np.int64
    columns = {"inputs": {"a": a.tolist(), "k": k.tolist(), "ignored": [1]}}  # extra keys: ignored
    feeds, row_format = codec.parse_predict_json(columns, inputs, strict=strict)
    assert row_format is False and sorted(feeds) == ["a", "k"]
    np.testing.assert_array_equal(feeds["a"], a)
    feeds, _ = codec.parse_predict_json({"inputs": a.tolist()}, {"a": DT["float32"]}, strict=strict)
    np.testing.assert_array_equal(feeds["a"], a)
    feeds, _ = codec.parse_predict_json({"inputs": 2.5}, {"a": DT["float32"]}, strict=strict)
    assert feeds["a"].shape == () and feeds["a"] == np.float32(2.5)


def test_b64_strings_bools_and_narrow_ints():
    raw = [b"\x00\x01\xfe", b"text"]
    body = {"instances": [{"b64": base64.b64encode(v).decode()} for v in raw]}
    feeds, _ = codec.parse_predict_json(body, {"s": DT["string"]})
    assert list(feeds["s"]) == raw
    feeds, _ = codec.parse_predict_json({"inputs": [["x", "y"]]}, {"s": DT["string"]})
    assert feeds["s"].tolist() == [[b"x", b"y"]]
    feeds, _ = codec.parse_predict_json({"inputs": [True, False]}, {"m": DT["bool"]})
    assert feeds["m"].dtype == np.bool_ and feeds["m"].tolist() == [True, False]
    for strict in (True, False):  # int_val narrows to the dtype as Tensor::FromProto does
        feeds, _ = codec.parse_predict_json({"inputs": [250, 300, -1]}, {"u": DT["uint8"]}, strict=strict)
        assert feeds["u"].dtype == np.uint8 and feeds["u"].tolist() == [250, 44, 255]


@pytest.mark.parametrize(
    ("value", "dt", "ok"),
    [
        ([1, 2.5, 16777215], "float32", True),
        ([16777216], "float32", False),  # an integer past 2^24 - 1 is lossy in float
        ([3.5e38], "float32", False),  # past float's range
        ([float("nan"), float("inf")], "float32", True),
        ([9007199254740991], "float64", True),
        ([9007199254740992], "float64", False),
        ([True], "float32", False),
        ([1.0], "int32", False),
        ([2147483648], "int32", False),
        ([-2147483648], "int32", True),
        ([9223372036854775807], "int64", True),
        ([9223372036854775808], "int64", False),
        ([-1], "uint32", False),
        ([4294967295], "uint32", True),
        ([18446744073709551615], "uint64", True),
        ([1], "bool", False),
        (["a"], "int64", False),
        ([None], "float32", False),
    ],
)
def test_json_numbers_follow_tf_serving(value, dt, ok):
    for strict in (True, False):
        if ok:
            arr = codec.json_to_array(value, DT[dt], strict=strict)
            assert arr.dtype == np.dtype(dt) and arr.shape == (len(value),)
        else:
            err = _error(codec.json_to_array, value, DT[dt], strict=strict)
            assert err.code == "INVALID_ARGUMENT"
            assert "is not of expected type" in err.message or "without loss of precision" in err.message


def test_unsupported_dtypes_are_unimplemented():
    err = _error(codec.json_to_array, [1.5], DT["half"])
    assert err.code == "UNIMPLEMENTED" and err.http_status == 501
    assert err.message == "Conversion of JSON Value: 1.5 to type: half"


def test_messages_are_tf_servings():
    rng = np.random.default_rng()
    assert _error(codec.json_to_array, ["x"], DT["float32"]).message.startswith(
        'JSON Value: "x" Type: String is not of expected type: float'
    )
    assert _error(codec.json_to_array, [[1.0, 2.0], [3.0]], DT["float32"]).message == (
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2"
    )
    assert _error(codec.json_to_array, [[1.0], 2.0], DT["float32"]).message == (
        "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    )
    assert _error(codec.json_to_array, [1.0, [2.0]], DT["float32"]).message == (
        "Encountered list at unexpected level: 1 expected < 1"
    )
    x = rng.standard_normal(2).tolist()
    err = _error(codec.parse_predict_json, {"instances": [x, x[:1]]}, {"x": DT["float32"]})
    assert err.message == (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 2 but got: 1"
    )
    err = _error(codec.parse_predict_json, {"instances": [[x], [[x[0]], [x[1]]]]}, {"x": DT["float32"]})
    assert "Expecting shape [1,2] but got: [2,1]" in err.message


@pytest.mark.parametrize(
    ("body", "inputs", "text"),
    [
        (
            {"instances": [[1.0]], "inputs": [[1.0]]},
            {"x": 1},
            "expecting only one of 'inputs' or 'instances'",
        ),
        ({"nothing": 1}, {"x": 1}, "Missing 'inputs' or 'instances' key"),
        ({"instances": []}, {"x": 1}, "No values in 'instances' array"),
        ({"instances": 1}, {"x": 1}, "Excepting 'instances' to be an list/array"),
        ({"instances": [[1.0]]}, {"a": 1, "b": 1}, "instances is a plain list"),
        ({"inputs": [[1.0]]}, {"a": 1, "b": 1}, "inputs is a plain value/list"),
        ({"inputs": {"a": [1.0]}}, {"a": 1, "b": 1}, "Missing named input: b in 'inputs' object."),
        ({"instances": [{"a": 1.0}, {"b": 1.0}]}, {"a": 1, "b": 1}, "must only have keys: a,b"),
        ({"instances": [{"a": 1.0, "c": 1.0}]}, {"a": 1}, "does not have named input: c"),
        ({"instances": [{"a": 1.0}, [1.0]]}, {"a": 1}, "Expecting object but got list at item 1"),
        ({"instances": [[1.0], {"a": 1.0}]}, {"a": 1}, "Expecting value/list but got object at item 1"),
        ({"instances": [{"b64": "!!!"}]}, {"s": 7}, "Unable to base64 decode"),
        ({"instances": [[{"b64": "AA==", "x": 1}]]}, {"s": 7}, "not formatted correctly for base64 data"),
        ({"instances": [{"b64": "AA=="}]}, {"x": 1}, "Type: Object is not of expected type: float"),
        ({"instances": [1.0]}, {}, "Failed to get input map for signature: DEFAULT"),
    ],
)
def test_bad_json_is_an_invalid_argument(body, inputs, text):
    err = _error(codec.parse_predict_json, body, inputs)
    assert err.code == "INVALID_ARGUMENT" and err.http_status == 400
    assert text in err.message, err.message


def test_signature_name_must_be_a_string():
    assert codec.signature_name({"signature_name": "a"}) == "a"
    assert (
        "'signature_name' key must be a string value."
        in _error(codec.signature_name, {"signature_name": 100}).message
    )


# ---------------------------------------------------------------------------------- JSON answers
def test_predict_json_row_and_columnar():
    rng = np.random.default_rng()
    y = rng.standard_normal((2, 3)).astype(np.float64)
    s = rng.standard_normal((2, 1)).astype(np.float64)
    assert codec.predict_json({"y": y}, True) == {"predictions": y.tolist()}
    assert codec.predict_json({"y": y}, False) == {"outputs": y.tolist()}
    rows = codec.predict_json({"y": y, "s": s}, True)["predictions"]
    assert rows == [{"y": y[i].tolist(), "s": s[i].tolist()} for i in range(2)]
    assert codec.predict_json({"y": y, "s": s}, False) == {"outputs": {"y": y.tolist(), "s": s.tolist()}}
    err = _error(codec.predict_json, {"y": y, "t": rng.standard_normal(5)}, True)
    assert "has inconsistent batch size: 5 expecting: 2" in err.message
    assert "has no shape information" in _error(codec.predict_json, {"t": np.float32(1.0)}, True).message
    assert codec.predict_json({"t": np.float32(1.5)}, False) == {"outputs": 1.5}


def test_float32_outputs_print_their_shortest_form():
    x = np.random.default_rng().standard_normal(5).astype(np.float32)
    text = json.dumps(codec.array_to_json(x))
    assert text == "[" + ", ".join(str(v) for v in x) + "]"  # numpy's shortest float32 repr
    assert np.array_equal(np.array(json.loads(text), np.float32), x)


def test_outputs_json_cannot_write_is_an_error():
    err = _error(codec.array_to_json, np.ones(2, np.float16))
    assert err.message == "Failed to write JSON value for tensor type: half"


def test_string_outputs_decode_or_b64():
    arr = np.array([b"caf\xc3\xa9", b"\xff\xfe"], dtype=object)
    assert codec.array_to_json(arr, "label") == ["café", {"b64": base64.b64encode(b"\xff\xfe").decode()}]
    assert codec.array_to_json(arr[:1], "image_bytes") == [{"b64": base64.b64encode(arr[0]).decode()}]


# ---------------------------------------------------------------------------------- tf.Example JSON
def test_examples_json_follows_tf_serving():
    from tensorflow_serving.apis import input_pb2

    rng = np.random.default_rng()
    x = rng.standard_normal(3).astype(np.float32).tolist()
    blob = rng.bytes(5)
    doc = {
        "context": {"ctx": "shared"},
        "examples": [{"x": x, "n": 7, "flag": True, "img": {"b64": base64.b64encode(blob).decode()},
                      "tags": ["a", "b"], "empty": []}],
    }  # fmt: skip
    inp = input_pb2.Input()
    codec.fill_input_from_json(doc, inp)
    ex = inp.example_list_with_context.examples[0].features.feature
    np.testing.assert_array_equal(np.array(ex["x"].float_list.value, np.float32), np.array(x, np.float32))
    assert list(ex["n"].int64_list.value) == [7] and list(ex["flag"].int64_list.value) == [1]
    assert list(ex["img"].bytes_list.value) == [blob] and list(ex["tags"].bytes_list.value) == [b"a", b"b"]
    assert ex["empty"].WhichOneof("kind") is None
    ctx = inp.example_list_with_context.context.features.feature["ctx"]
    assert list(ctx.bytes_list.value) == [b"shared"]
    serialized = codec.serialized_examples(inp)
    merged = tf.io.parse_single_example(serialized[0], {"ctx": tf.io.FixedLenFeature([], tf.string)})
    assert merged["ctx"].numpy() == b"shared"


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ({"examples": [{"x": [1, 2.5]}]}, "Unexpected element type in feature: x expecting type: int64"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": [[1]]}]}, "Feature: x has element with unexpected JSON type: Array"),
        ({"examples": [{"x": 18446744073709551615}]}, "has uint64 element. Only int64 is supported."),
        ({"examples": [[1]]}, "Example must be JSON object but got JSON Array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": {}}, "Expecting 'examples' value to be an list/array"),
        ({"nothing": 1}, "key 'examples' is expected and was not found"),
    ],
)
def test_bad_examples_are_invalid_arguments(doc, text):
    from tensorflow_serving.apis import input_pb2

    err = _error(codec.fill_input_from_json, doc, input_pb2.Input())
    assert err.code == "INVALID_ARGUMENT" and text in err.message, err.message


def test_empty_input_is_an_error():
    from tensorflow_serving.apis import input_pb2

    assert _error(codec.serialized_examples, input_pb2.Input()).message == "Input is empty."
