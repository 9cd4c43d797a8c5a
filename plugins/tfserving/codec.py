"""TF Serving's wire formats: TensorProto <-> numpy, REST JSON (row and columnar) <-> numpy."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ServingError

# DataType enum values (tensorflow/core/framework/types.proto) and their numpy dtypes.
_NP_OF_DT = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    7: np.object_,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
_DT_OF_NP = {np.dtype(v).name: k for k, v in _NP_OF_DT.items() if v is not np.object_}
DT_NAMES = {
    1: "float",
    2: "double",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    9: "int64",
    10: "bool",
    17: "uint16",
    19: "half",
    22: "uint32",
    23: "uint64",
    14: "bfloat16",
}
_VAL_FIELD = {
    1: "float_val",
    2: "double_val",
    3: "int_val",
    4: "int_val",
    5: "int_val",
    6: "int_val",
    7: "string_val",
    9: "int64_val",
    10: "bool_val",
    17: "int_val",
    19: "half_val",
    22: "uint32_val",
    23: "uint64_val",
}


def np_dtype(dt: int) -> np.dtype:
    """Numpy dtype for a TF DataType enum value."""
    if dt not in _NP_OF_DT:
        raise ServingError("INVALID_ARGUMENT", f"unsupported tensor dtype {DT_NAMES.get(dt, dt)}")
    return np.dtype(_NP_OF_DT[dt])


def dt_of(array: np.ndarray) -> int:
    """TF DataType enum value for a numpy array."""
    if array.dtype.kind in "OSU":
        return 7
    try:
        return _DT_OF_NP[array.dtype.name]
    except KeyError:
        raise ServingError("INTERNAL", f"cannot encode dtype {array.dtype}") from None


def to_ndarray(proto: Any) -> np.ndarray:
    """Decode a TensorProto (tensor_content or the typed *_val fields, with TF's broadcast)."""
    dtype = np_dtype(proto.dtype)
    shape = [int(d.size) for d in proto.tensor_shape.dim]
    size = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        arr = np.frombuffer(proto.tensor_content, dtype=dtype)
        if arr.size != size:
            raise ServingError(
                "INVALID_ARGUMENT", f"tensor_content holds {arr.size} values, shape {shape} needs {size}"
            )
        return arr.reshape(shape).copy() if not arr.flags.writeable else arr.reshape(shape)
    field = _VAL_FIELD[proto.dtype]
    vals = getattr(proto, field)
    if proto.dtype == 7:
        arr = np.empty(len(vals), dtype=object)
        arr[:] = list(vals)
    elif proto.dtype == 19:
        arr = np.asarray(vals, dtype=np.uint16).view(np.float16)
    else:
        arr = np.asarray(vals, dtype=dtype)
    if arr.size == size:
        return arr.reshape(shape)
    if arr.size == 1 or (arr.size == 0 and size == 0):
        return np.full(shape, arr.flat[0] if arr.size else 0, dtype=arr.dtype)
    if arr.size < size and arr.size > 0:  # TF pads with the last value
        return np.concatenate([arr, np.repeat(arr[-1:], size - arr.size)]).reshape(shape)
    raise ServingError("INVALID_ARGUMENT", f"tensor has {arr.size} values, shape {shape} needs {size}")


def to_tensor_proto(array: np.ndarray, proto: Any) -> Any:
    """Fill ``proto`` (a TensorProto) from ``array``; numeric data goes in tensor_content."""
    array = np.asarray(array)
    dt = dt_of(array)
    proto.dtype = dt
    for d in array.shape:
        proto.tensor_shape.dim.add().size = int(d)
    if dt == 7:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    else:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


# ---------------------------------------------------------------------------------- REST JSON
def _decode_b64(value: Any) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except Exception as exc:  # noqa: BLE001
                raise ServingError("INVALID_ARGUMENT", f"bad base64 value: {exc}") from exc
        raise ServingError("INVALID_ARGUMENT", 'a JSON object in a tensor must be {"b64": ...}')
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def json_to_array(value: Any, dt: int, name: str) -> np.ndarray:
    """Turn a JSON value into an array of the signature's dtype, the way TF Serving checks it."""
    value = _decode_b64(value)
    want = np_dtype(dt)
    if dt == 7:

        def enc(v: Any) -> Any:
            if isinstance(v, list):
                return [enc(x) for x in v]
            if isinstance(v, (bytes, str)):
                return v if isinstance(v, bytes) else v.encode()
            raise ServingError("INVALID_ARGUMENT", f"input '{name}': expects strings, got {v!r}")

        try:
            out = np.array(enc(value), dtype=object)
        except ValueError as exc:
            raise ServingError("INVALID_ARGUMENT", f"input '{name}': ragged tensor: {exc}") from exc
        return out
    try:
        raw = np.asarray(value)
    except ValueError as exc:
        raise ServingError(
            "INVALID_ARGUMENT", f"input '{name}': the JSON lists are not a rectangular tensor"
        ) from exc
    if raw.dtype == object or raw.dtype.kind in "SU":
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input '{name}': expects {DT_NAMES[dt]} values, "
            f"got {'strings' if raw.dtype.kind in 'SU' else 'mixed values'}",
        )
    if want.kind in "iu" and raw.dtype.kind == "f":
        raise ServingError(
            "INVALID_ARGUMENT", f"input '{name}': expects {DT_NAMES[dt]} values, got floating point numbers"
        )
    if want.kind == "b" and raw.dtype.kind != "b":
        raise ServingError("INVALID_ARGUMENT", f"input '{name}': expects true/false values")
    return raw.astype(want)


def array_to_json(array: np.ndarray, name: str = "") -> Any:
    """Numpy -> JSON-able lists; strings decode as UTF-8, else (or for *_bytes) as {"b64": ...}."""
    if array.dtype == object or array.dtype.kind == "S":

        def dec(v: Any) -> Any:
            if isinstance(v, bytes):
                if not name.endswith("_bytes"):
                    try:
                        return v.decode()
                    except UnicodeDecodeError:
                        pass
                return {"b64": base64.b64encode(v).decode()}
            return v

        return np.vectorize(dec, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def parse_predict_json(
    body: Mapping[str, Any], inputs: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], bool]:
    """Decode a :predict body into named arrays; return (feeds, row_format).

    ``inputs`` maps the signature's input names to their DataType values.
    """
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise ServingError("INVALID_ARGUMENT", 'Request can not have both "instances" and "inputs"')
    if not has_rows and not has_cols:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
    names = list(inputs)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError("INVALID_ARGUMENT", '"instances" must be a non-empty JSON list')
        if all(isinstance(r, Mapping) and not (set(r) == {"b64"}) for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise ServingError("INVALID_ARGUMENT", "every instance must name the same inputs")
            cols = {k: [r[k] for r in rows] for k in keys}
        elif len(names) == 1:
            cols = {names[0]: rows}
        else:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"the signature takes {len(names)} inputs; each instance must be a JSON object naming them",
            )
        _check_names(cols, names)
        return {k: json_to_array(v, inputs[k], k) for k, v in cols.items()}, True
    value = body["inputs"]
    if isinstance(value, Mapping) and not (set(value) == {"b64"}):
        cols = dict(value)
    elif len(names) == 1:
        cols = {names[0]: value}
    else:
        raise ServingError(
            "INVALID_ARGUMENT",
            f'the signature takes {len(names)} inputs; "inputs" must be a JSON object naming them',
        )
    _check_names(cols, names)
    return {k: json_to_array(v, inputs[k], k) for k, v in cols.items()}, False


def _check_names(cols: Mapping[str, Any], names: list[str]) -> None:
    unknown = sorted(set(cols) - set(names))
    missing = sorted(set(names) - set(cols))
    if unknown or missing:
        raise ServingError(
            "INVALID_ARGUMENT",
            "input names do not match the signature: "
            + (f"unknown {unknown} " if unknown else "")
            + (f"missing {missing}" if missing else "")
            + f" (signature inputs: {sorted(names)})",
        )


def predict_json(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Encode outputs as TF Serving does: {"predictions": rows} or {"outputs": ...}."""
    if not row_format:
        if len(outputs) == 1:
            ((name, arr),) = outputs.items()
            return {"outputs": array_to_json(arr, name)}
        return {"outputs": {k: array_to_json(v, k) for k, v in outputs.items()}}
    batch = {int(v.shape[0]) if v.ndim else -1 for v in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        raise ServingError(
            "INVALID_ARGUMENT", 'outputs do not share a batch dimension; use the columnar format ("inputs")'
        )
    if len(outputs) == 1:
        ((name, arr),) = outputs.items()
        return {"predictions": array_to_json(arr, name)}
    cols = {k: array_to_json(v, k) for k, v in outputs.items()}
    n = batch.pop()
    return {"predictions": [{k: cols[k][i] for k in cols} for i in range(n)]}
