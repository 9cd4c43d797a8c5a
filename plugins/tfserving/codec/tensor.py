"""TensorProto <-> numpy, as Tensor::FromProto and Tensor::AsProtoField / AsProtoTensorContent do."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ServingError
from .dtypes import (
    DT_BFLOAT16,
    DT_COMPLEX64,
    DT_COMPLEX128,
    DT_HALF,
    DT_NAMES,
    DT_STRING,
    VAL_FIELD,
    dt_of,
    np_dtype,
)


def to_ndarray(proto: Any) -> np.ndarray:
    """Decode a TensorProto as Tensor::FromProto does (typed fields pad with their last value).

    Raises:
        ServingError: INVALID_ARGUMENT when the proto does not describe a tensor.
    """
    dtype = np_dtype(proto.dtype)
    shape = [int(d.size) for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise ServingError("INVALID_ARGUMENT", f"negative dimension in tensor shape {shape}")
    size = math.prod(shape)
    if proto.tensor_content:
        if proto.dtype == DT_STRING or len(proto.tensor_content) != size * dtype.itemsize:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"tensor_content holds {len(proto.tensor_content)} bytes, "
                f"shape {shape} of {DT_NAMES[proto.dtype]} needs {size * dtype.itemsize}",
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape).copy()
    vals = getattr(proto, VAL_FIELD[proto.dtype])
    if proto.dtype == DT_STRING:
        arr = np.empty(len(vals), dtype=object)
        arr[:] = list(vals)
    elif proto.dtype in (DT_HALF, DT_BFLOAT16):
        arr = np.asarray(vals, dtype=np.uint16).view(dtype)
    elif proto.dtype in (DT_COMPLEX64, DT_COMPLEX128):
        flat = np.asarray(vals, dtype=np.float32 if proto.dtype == DT_COMPLEX64 else np.float64)
        if flat.size % 2:
            raise ServingError("INVALID_ARGUMENT", "complex values come in (real, imaginary) pairs")
        arr = flat.view(dtype)
    else:
        arr = np.asarray(vals).astype(dtype) if len(vals) else np.empty(0, dtype)
    if arr.size == size:
        return arr.reshape(shape)
    if arr.size > size:
        raise ServingError("INVALID_ARGUMENT", f"tensor has {arr.size} values, shape {shape} needs {size}")
    if arr.size == 0:
        return np.zeros(shape, dtype) if dtype.kind != "O" else np.full(shape, b"", dtype=object)
    return np.concatenate([arr, np.repeat(arr[-1:], size - arr.size)]).reshape(shape)


def to_tensor_proto(array: np.ndarray, proto: Any, *, content: bool = False) -> Any:
    """Fill ``proto`` from ``array`` as Tensor::AsProtoField does (typed ``*_val`` fields).

    ``content=True`` writes numeric data to ``tensor_content`` instead (AsProtoTensorContent).
    """
    array = np.asarray(array)
    dt = dt_of(array)
    proto.dtype = dt
    for d in array.shape:
        proto.tensor_shape.dim.add().size = int(d)
    flat = array.reshape(-1)
    if dt == DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif content:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    elif dt in (DT_HALF, DT_BFLOAT16):
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif dt in (DT_COMPLEX64, DT_COMPLEX128):
        getattr(proto, VAL_FIELD[dt]).extend(flat.view(flat.real.dtype).tolist())
    else:
        getattr(proto, VAL_FIELD[dt]).extend(flat.tolist())
    return proto
