"""Decode a V2 (Open Inference Protocol) REST infer body into an ``InferRequest`` with NumPy.

The body is JSON, or JSON followed by binary tensors (the binary tensor extension: the header
``Inference-Header-Content-Length`` gives the JSON's length, each binary input's
``parameters.binary_data_size`` its bytes, little-endian, row-major; a ``BYTES`` element is a
4-byte little-endian length and its bytes). The result is the request KServe 0.21's
``InferRequest.from_bytes`` / ``from_inference_request`` would build, except that each input
holds its tensor as one numpy array (:class:`TensorInput`): no Python object per element
(``from_bytes`` spends tens of ms on one 224x224 image), no copy of a binary tensor.
Every problem is a ``BadRequestError`` (400): a shape ``[-1, 16]`` or ``[1.5, 16]``, a length
that does not fit, bytes left over.
"""

from __future__ import annotations

import array
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from yellowstone.errors import BadRequestError

from .codec import as_array, request_shape

# Open Inference Protocol datatype -> its numpy dtype on the wire (little-endian).
WIRE_DTYPES = {
    "BOOL": np.dtype("?"), "INT8": np.dtype("i1"), "UINT8": np.dtype("u1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")


class TensorInput(InferInput):
    """An ``InferInput`` whose data is a numpy array already: ``as_numpy`` returns it as is."""

    def as_numpy(self) -> np.ndarray:
        if isinstance(self._data, np.ndarray):
            return self._data
        return super().as_numpy()


def decode_request(body: bytes, headers: Mapping[str, str], model_name: str) -> InferRequest:
    """A V2 REST infer body (``headers`` with lower-case names, as Starlette gives them)."""
    header_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if header_length is None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not (content_type.endswith(("/json", "+json"))):
            raise BadRequestError(f"received byte inputs, but the "
                                  f"'{INFERENCE_CONTENT_LENGTH_HEADER}' header is missing")
        json_length = len(body)
    else:
        json_length = _json_length(header_length, len(body))
    view = memoryview(body)
    try:
        header = orjson.loads(view[:json_length])
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the request's JSON does not parse: {exc}") from exc
    if not isinstance(header, dict):
        raise BadRequestError("the request must be a JSON object with 'inputs'")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list):
        raise BadRequestError("'inputs' must be a list of tensors")
    offset = json_length
    inputs = []
    for i, item in enumerate(raw_inputs):
        tensor, offset = _input(item, i, view, offset)
        inputs.append(tensor)
    if offset != len(body):
        raise BadRequestError(f"the body has {len(body) - offset} bytes after the last binary "
                              f"input (the inputs' binary_data_size add up to "
                              f"{offset - json_length}, after a {json_length}-byte JSON header)")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError(f"'id' must be a string, got {request_id!r}")
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=request_id,
                        parameters=_parameters(header.get("parameters"), "the request"),
                        request_outputs=_outputs(header.get("outputs")))


def _json_length(value: str, body_length: int) -> int:
    try:
        length = int(value)
    except ValueError:
        length = -1
    if not 0 <= length <= body_length:
        raise BadRequestError(f"'{INFERENCE_CONTENT_LENGTH_HEADER}: {value}' must be an integer "
                              f"from 0 to the body's length ({body_length})")
    return length


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    """A parameters object: names to strings, numbers or booleans (as KServe's model reads it)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(v, str | int | float) for v in value.values()):
        raise BadRequestError(f"{where}: 'parameters' must map names to strings, numbers or "
                              f"booleans, got {value!r}"[:300])
    return value


def _outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise BadRequestError("'outputs' must be a list of objects with a 'name'")
    return [RequestedOutput(name=o["name"], parameters=_parameters(o.get("parameters"),
                                                                   f"output {o['name']!r}"))
            for o in value] or None


def _input(item: Any, index: int, view: memoryview, offset: int) -> tuple[TensorInput, int]:
    """One entry of ``inputs`` and the binary offset after it."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise BadRequestError(f"inputs[{index}] must be an object with a 'name'")
    name = item["name"]
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype.upper() not in WIRE_DTYPES:
        raise BadRequestError(f"input {name!r}: datatype {datatype!r} is not one of "
                              f"{', '.join(WIRE_DTYPES)}")
    datatype = datatype.upper()
    raw_shape = item.get("shape")
    if isinstance(raw_shape, list):  # 2.0 reads as 2, as KServe's (pydantic) model reads it
        raw_shape = [int(d) if isinstance(d, float) and d.is_integer() else d for d in raw_shape]
    shape = request_shape(name, raw_shape)
    parameters = _parameters(item.get("parameters"), f"input {name!r}")
    data = item.get("data")
    if data is not None:
        if datatype == "FP16":
            raise BadRequestError(f"input {name!r}: FP16 data cannot be sent as JSON; use the "
                                  f"binary data format")
        array = json_tensor(name, data, datatype, shape)
    else:
        size = (parameters or {}).get("binary_data_size")
        if size is None:
            raise BadRequestError(f"input {name!r}: 'data' field is missing (and no "
                                  f"binary_data_size parameter)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequestError(f"input {name!r}: binary_data_size must be an integer >= 0, "
                                  f"got {size!r}")
        if offset + size > len(view):
            raise BadRequestError(f"input {name!r}: binary_data_size {size} runs past the end of "
                                  f"the body ({len(view) - offset} bytes left)")
        array = binary_tensor(name, view[offset:offset + size], datatype, shape)
        offset += size
    return TensorInput(name=name, shape=list(shape), datatype=datatype, data=array,
                       parameters=parameters), offset


def json_tensor(name: str, data: Any, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON ``data`` array (flat or nested, row-major) as an array of ``shape``."""
    if not isinstance(data, list):
        raise BadRequestError(f"input {name!r}: 'data' must be a list, got "
                              f"{type(data).__name__}")
    want = WIRE_DTYPES[datatype]
    if datatype == "BYTES":
        array = np.empty(_count(data), dtype=object)
        array[:] = list(_flat(data))
        if not all(isinstance(v, str | bytes) for v in array):
            raise BadRequestError(f"input {name!r}: BYTES data must be strings")
    else:
        array = _flat_numbers(data, want.newbyteorder("="))
        if array is None:  # nested, or not plain numbers: the general path and its errors
            array = as_array(data, want.newbyteorder("="), f"input {name!r}")
    if array.size != math.prod(shape):
        raise BadRequestError(f"input {name!r}: {array.size} values do not fit shape "
                              f"{list(shape)} ({math.prod(shape)} values)")
    return array.reshape(shape)


def _flat_numbers(data: list, want: np.dtype) -> np.ndarray | None:
    """A flat list of JSON numbers as ``want``, faster than ``np.asarray``; None otherwise.

    ``array.array`` takes only numbers (no strings, lists or None), so whatever it refuses goes
    to :func:`codec.as_array`, which says what is wrong.
    """
    code = {"f": "d", "i": "q", "u": "Q"}.get(want.kind)
    if code is None:
        return None
    try:
        values = np.frombuffer(array.array(code, data), dtype=np.dtype(code))
    except (TypeError, ValueError, OverflowError):
        return None
    if want.kind in "iu" and values.size:
        info = np.iinfo(want)
        if values.min() < info.min or values.max() > info.max:
            return None  # as_array names the range
    return values.astype(want, copy=False)


def binary_tensor(name: str, raw: memoryview | bytes, datatype: str,
                  shape: tuple[int, ...]) -> np.ndarray:
    """One input's binary data as an array of ``shape``: a view on ``raw`` for fixed-size types."""
    count = math.prod(shape)
    if datatype == "BYTES":
        array = _bytes_elements(name, memoryview(raw), count)
    else:
        wire = WIRE_DTYPES[datatype]
        if len(raw) != count * wire.itemsize:
            raise BadRequestError(f"input {name!r}: {len(raw)} bytes of {datatype} do not fit "
                                  f"shape {list(shape)} ({count * wire.itemsize} bytes)")
        if datatype == "BOOL":  # one byte each; any non-zero byte is true
            array = np.frombuffer(raw, dtype=np.uint8) != 0
        else:
            array = np.frombuffer(raw, dtype=wire)
            if not wire.isnative:  # a big-endian host: the protocol's bytes are little-endian
                array = array.astype(wire.newbyteorder("="))
    return array.reshape(shape)


def _bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    """``BYTES``: ``count`` elements, each a 4-byte little-endian length and its bytes."""
    items = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise BadRequestError(f"input {name!r}: BYTES element {len(items)} is cut short "
                                  f"in its length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise BadRequestError(f"input {name!r}: BYTES element {len(items)} says {length} "
                                  f"bytes, {end - offset} are left")
        items.append(bytes(raw[offset:offset + length]))
        offset += length
    if len(items) != count:
        raise BadRequestError(f"input {name!r}: {len(items)} BYTES elements do not fit the "
                              f"shape ({count} elements)")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _flat(data: list) -> Any:
    for v in data:
        if isinstance(v, list):
            yield from _flat(v)
        else:
            yield v


def _count(data: list) -> int:
    return sum(_count(v) if isinstance(v, list) else 1 for v in data)
