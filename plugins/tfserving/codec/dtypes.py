"""TF's DataType values and names, and their numpy dtypes (types.proto, DataTypeString)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ServingError

# DataType enum values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL, DT_BFLOAT16, DT_UINT16, DT_COMPLEX128 = 8, 9, 10, 14, 17, 18
DT_HALF, DT_UINT32, DT_UINT64 = 19, 22, 23

# DataTypeString() names.
DT_NAMES = {
    DT_FLOAT: "float",
    DT_DOUBLE: "double",
    DT_INT32: "int32",
    DT_UINT8: "uint8",
    DT_INT16: "int16",
    DT_INT8: "int8",
    DT_STRING: "string",
    DT_COMPLEX64: "complex64",
    DT_INT64: "int64",
    DT_BOOL: "bool",
    DT_BFLOAT16: "bfloat16",
    DT_UINT16: "uint16",
    DT_COMPLEX128: "complex128",
    DT_HALF: "half",
    DT_UINT32: "uint32",
    DT_UINT64: "uint64",
}
NP_OF_DT: dict[int, Any] = {
    DT_FLOAT: np.float32,
    DT_DOUBLE: np.float64,
    DT_INT32: np.int32,
    DT_UINT8: np.uint8,
    DT_INT16: np.int16,
    DT_INT8: np.int8,
    DT_STRING: np.object_,
    DT_COMPLEX64: np.complex64,
    DT_INT64: np.int64,
    DT_BOOL: np.bool_,
    DT_UINT16: np.uint16,
    DT_COMPLEX128: np.complex128,
    DT_HALF: np.float16,
    DT_UINT32: np.uint32,
    DT_UINT64: np.uint64,
}
# The TensorProto field Tensor::AsProtoField writes (and FromProto reads) for each dtype.
VAL_FIELD = {
    DT_FLOAT: "float_val",
    DT_DOUBLE: "double_val",
    DT_INT32: "int_val",
    DT_UINT8: "int_val",
    DT_INT16: "int_val",
    DT_INT8: "int_val",
    DT_STRING: "string_val",
    DT_COMPLEX64: "scomplex_val",
    DT_INT64: "int64_val",
    DT_BOOL: "bool_val",
    DT_BFLOAT16: "half_val",
    DT_UINT16: "int_val",
    DT_COMPLEX128: "dcomplex_val",
    DT_HALF: "half_val",
    DT_UINT32: "uint32_val",
    DT_UINT64: "uint64_val",
}


def _bfloat16() -> Any:
    import ml_dtypes  # a TensorFlow dependency

    return ml_dtypes.bfloat16


def np_dtype(dt: int) -> np.dtype:
    """Numpy dtype for a TF DataType enum value; INVALID_ARGUMENT for dtypes not served."""
    if dt == DT_BFLOAT16:
        return np.dtype(_bfloat16())
    if dt not in NP_OF_DT:
        raise ServingError("INVALID_ARGUMENT", f"unsupported tensor dtype {DT_NAMES.get(dt, dt)}")
    return np.dtype(NP_OF_DT[dt])


def dt_of(array: np.ndarray) -> int:
    """TF DataType enum value for a numpy array."""
    kind, name = array.dtype.kind, array.dtype.name
    if kind in "OSU":
        return DT_STRING
    if name == "bfloat16":
        return DT_BFLOAT16
    for dt, np_type in NP_OF_DT.items():
        if np_type is not np.object_ and np.dtype(np_type) == array.dtype:
            return dt
    raise ServingError("INTERNAL", f"cannot encode dtype {array.dtype}")


def dtype_name(dtype: np.dtype) -> str:
    """DataTypeString of a numpy dtype (``string`` for object arrays)."""
    if dtype.kind in "OSU":
        return "string"
    try:
        return DT_NAMES[dt_of(np.empty(0, dtype))]
    except ServingError:
        return str(dtype)
