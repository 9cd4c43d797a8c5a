"""One tensor from a JSON value, as json_tensor.cc's FillTensorProto builds it, with its texts."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from yellowstone.serving.inputs import nested_shape

from ..errors import ServingError
from .dtypes import (
    DT_BOOL,
    DT_DOUBLE,
    DT_FLOAT,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_NAMES,
    DT_STRING,
    DT_UINT8,
    DT_UINT32,
    DT_UINT64,
    NP_OF_DT,
    np_dtype,
)

_TEXT_LIMIT = 1024


def json_text(value: Any) -> str:
    """JsonValueToString (pretty, 4-space indents), cut short for huge values."""
    try:
        out = json.dumps(value, indent=4 if isinstance(value, (list, dict)) else None)
    except (TypeError, ValueError, RecursionError):
        out = "<a value nested too deeply to print>"
    return out if len(out) <= _TEXT_LIMIT else out[:_TEXT_LIMIT] + "..."


def json_type(value: Any) -> str:
    """JsonTypeToString: ``Null``, ``True``, ``False``, ``Object``, ``Array``, ``String``, ``Number``."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def invalid(msg: str) -> ServingError:
    """INVALID_ARGUMENT with ``msg``."""
    return ServingError("INVALID_ARGUMENT", msg)


def type_error(value: Any, dt: int) -> ServingError:
    """A JSON value of the wrong type for ``dt``."""
    return invalid(
        f"JSON Value: {json_text(value)} Type: {json_type(value)} is not of expected type: {DT_NAMES[dt]}"
    )


def lossy(value: Any, target: str) -> ServingError:
    """A JSON number ``target`` cannot hold exactly."""
    return invalid(f"Cannot convert JSON value: {json_text(value)} to {target} without loss of precision.")


def is_b64(value: Any) -> bool:
    """A ``{"b64": "<string>"}`` object (one key, a string value)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def b64decode(value: Any) -> bytes:
    """The bytes of a ``{"b64": ...}`` object (padding optional)."""
    if not is_b64(value):
        raise invalid(f"JSON Value: {json_text(value)} not formatted correctly for base64 data")
    data = value["b64"].strip()
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("Unable to base64 decode") from exc


INT_RANGE = {
    DT_INT32: (-(1 << 31), 1 << 31),
    DT_INT16: (-(1 << 31), 1 << 31),
    DT_INT8: (-(1 << 31), 1 << 31),
    DT_UINT8: (-(1 << 31), 1 << 31),
    DT_INT64: (-(1 << 63), 1 << 63),
    DT_UINT32: (0, 1 << 32),
    DT_UINT64: (0, 1 << 64),
}
MAX_EXACT_INT = {DT_FLOAT: (1 << 24) - 1, DT_DOUBLE: (1 << 53) - 1}
FLT_MAX = float(np.finfo(np.float32).max)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _leaf(v: Any, dt: int) -> Any:
    """AddValueToTensor: one JSON leaf as a value of ``dt``."""
    if isinstance(v, dict):
        if dt == DT_STRING:
            return b64decode(v)
        raise type_error(v, dt)
    if dt in (DT_FLOAT, DT_DOUBLE):
        if not _is_number(v):
            raise type_error(v, dt)
        name = DT_NAMES[dt]
        if isinstance(v, int):
            if abs(v) > MAX_EXACT_INT[dt]:
                raise lossy(v, name)
        elif math.isfinite(v) and dt == DT_FLOAT and abs(v) > FLT_MAX:
            raise lossy(v, name)
        return v
    if dt in INT_RANGE:
        lo, hi = INT_RANGE[dt]
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v < hi):
            raise type_error(v, dt)
        return v
    if dt == DT_STRING:
        if not isinstance(v, str):
            raise type_error(v, dt)
        return v.encode()
    if dt == DT_BOOL:
        if not isinstance(v, bool):
            raise type_error(v, dt)
        return v
    raise ServingError(
        "UNIMPLEMENTED", f"Conversion of JSON Value: {json_text(v)} to type: {DT_NAMES.get(dt, str(dt))}"
    )


def dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the sizes along the chain of first elements."""
    return list(nested_shape(value))


def _build(leaves: list[Any], dt: int, shape: Sequence[int]) -> np.ndarray:
    if dt == DT_STRING:
        arr = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        return arr.reshape(shape)
    if dt in (DT_INT16, DT_INT8, DT_UINT8):  # int_val holds int32; FromProto narrows it
        return np.asarray(leaves, dtype=np.int32).astype(np_dtype(dt)).reshape(shape)
    return np.asarray(leaves, dtype=np_dtype(dt)).reshape(shape)


_MAX_RANK = 64  # numpy's limit (TensorFlow's is 254)


def fill(value: Any, dt: int) -> np.ndarray:
    """FillTensorProto, exactly (in order, every leaf checked), without recursion."""
    shape = dense_shape(value)
    rank = len(shape)
    if rank > _MAX_RANK:
        raise invalid(f"JSON Value: a tensor of rank {rank}; at most {_MAX_RANK} dimensions are served")
    leaves: list[Any] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if not isinstance(v, list):
            if level != rank:
                raise invalid(
                    f"JSON Value: {json_text(v)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            leaves.append(_leaf(v, dt))
            continue
        if level >= rank:
            raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(v) != shape[level]:
            raise invalid(
                f"Encountered list at unexpected size: {len(v)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        stack.extend((x, level + 1) for x in reversed(v))
    return _build(leaves, dt, shape)


def bulk(value: Any, dt: int) -> np.ndarray | None:
    """The fast path for numeric and bool tensors: None where only :func:`fill` can judge."""
    if dt == DT_STRING or dt not in NP_OF_DT:
        return None
    try:
        raw = np.asarray(value)
    except (ValueError, OverflowError, TypeError):
        return None
    kind = raw.dtype.kind
    if dt == DT_BOOL:
        return raw if kind == "b" else None
    if kind not in "iuf" or raw.size == 0:
        return None
    if dt in MAX_EXACT_INT:
        big = np.abs(raw) > MAX_EXACT_INT[dt]
        if kind == "f":  # an integral value this big may have been a JSON integer: judge each
            finite = np.isfinite(raw)
            if np.any(big & finite & (raw == np.floor(raw))):
                return None
            if dt == DT_FLOAT and np.any(finite & (np.abs(raw) > FLT_MAX)):
                return None
        elif np.any(big):
            return None
        return raw.astype(np_dtype(dt))
    if kind == "f":
        return None
    lo, hi = INT_RANGE[dt]
    if raw.min() < lo or raw.max() >= hi:
        return None
    if dt in (DT_INT16, DT_INT8, DT_UINT8):
        return raw.astype(np.int32).astype(np_dtype(dt))
    return raw.astype(np_dtype(dt))


def json_to_array(value: Any, dt: int, *, strict: bool = True) -> np.ndarray:
    """One tensor from a JSON value, as TF Serving's FillTensorProto builds it.

    ``strict=False`` (the body has no ``true``/``false``) lets numeric lists convert in bulk.
    """
    if not strict or dt == DT_BOOL:
        arr = bulk(value, dt)
        if arr is not None:
            return arr
    return fill(value, dt)
