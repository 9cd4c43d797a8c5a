"""TF Serving's wire formats: TensorProto <-> numpy, and REST JSON as ``util/json_tensor.cc`` has it."""

from __future__ import annotations

from .dtypes import (
    DT_BFLOAT16,
    DT_BOOL,
    DT_COMPLEX64,
    DT_COMPLEX128,
    DT_DOUBLE,
    DT_FLOAT,
    DT_HALF,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_NAMES,
    DT_STRING,
    DT_UINT8,
    DT_UINT16,
    DT_UINT32,
    DT_UINT64,
    dt_of,
    dtype_name,
    np_dtype,
)
from .examples import example_from_json, fill_input_from_json, serialized_examples, string_tensor
from .json_answers import array_to_json, classification_json, predict_json, regression_json
from .json_doc import DEPTH_LIMIT, may_hold_booleans, parse_json
from .json_rows import parse_predict_json, signature_name
from .json_values import dense_shape, is_b64, json_to_array
from .tensor import to_ndarray, to_tensor_proto

__all__ = [
    "DEPTH_LIMIT", "DT_BFLOAT16", "DT_BOOL", "DT_COMPLEX64", "DT_COMPLEX128", "DT_DOUBLE", "DT_FLOAT",
    "DT_HALF", "DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_NAMES", "DT_STRING", "DT_UINT8",
    "DT_UINT16", "DT_UINT32", "DT_UINT64", "array_to_json", "classification_json", "dense_shape",
    "dt_of", "dtype_name", "example_from_json", "fill_input_from_json", "is_b64", "json_to_array",
    "may_hold_booleans", "np_dtype", "parse_json", "parse_predict_json", "predict_json",
    "regression_json", "serialized_examples", "signature_name", "string_tensor", "to_ndarray",
    "to_tensor_proto",
]
