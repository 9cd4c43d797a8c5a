"""JSON answers: Predict's ``predictions``/``outputs`` and Classify/Regress ``results``, as MakeJsonFrom*."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from .dtypes import dtype_name
from .json_values import invalid

_SHORT_FLOATS = 1 << 16  # float32 outputs up to this size print their shortest decimal form


def array_to_json(array: np.ndarray, name: str = "") -> Any:
    """A tensor as JSON values (AddTensorValues): strings as text, ``*_bytes`` ones as b64."""
    kind = array.dtype.kind
    if kind in "OS":
        as_bytes = name.endswith("_bytes")

        def enc(v: Any) -> Any:
            if not isinstance(v, bytes):
                return str(v)
            if not as_bytes:
                try:
                    return v.decode()
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(v).decode()}

        return np.frompyfunc(enc, 1, 1)(array).tolist() if array.size else array.tolist()
    if kind == "U":
        return array.tolist()
    if array.dtype == np.float32 and array.size <= _SHORT_FLOATS:
        return array.astype(str).astype(np.float64).tolist()
    if kind in "biu" and array.dtype != np.uint16 or array.dtype in (np.float32, np.float64):
        return array.tolist()
    raise invalid(f"Failed to write JSON value for tensor type: {dtype_name(array.dtype)}")


def predict_json(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """MakeJsonFromTensors: ``{"predictions": rows}`` or ``{"outputs": ...}``."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    if not row_format:
        if len(outputs) == 1:
            ((name, arr),) = outputs.items()
            return {"outputs": array_to_json(arr, name)}
        return {"outputs": {k: array_to_json(v, k) for k, v in outputs.items()}}
    batch = 0
    for name, arr in outputs.items():
        if arr.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if arr.shape[0] < 1:
            raise invalid(f"Tensor name: {name} has invalid batch size: {arr.shape[0]}")
        if batch and arr.shape[0] != batch:
            raise invalid(
                f"Tensor name: {name} has inconsistent batch size: {arr.shape[0]} expecting: {batch}"
            )
        batch = arr.shape[0]
    if len(outputs) == 1:
        ((name, arr),) = outputs.items()
        return {"predictions": array_to_json(arr, name)}
    cols = {k: array_to_json(v, k) for k, v in outputs.items()}
    return {"predictions": [{k: cols[k][i] for k in cols} for i in range(batch)]}


def classification_json(result: Any) -> dict[str, Any]:
    """MakeJsonFromClassificationResult: ``{"results": [[[label, score], ...], ...]}``."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    return {
        "results": [[[c.label, _float32(c.score)] for c in row.classes] for row in result.classifications]
    }


def regression_json(result: Any) -> dict[str, Any]:
    """MakeJsonFromRegressionResult: ``{"results": [value, ...]}``."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return {"results": [_float32(r.value) for r in result.regressions]}


def _float32(v: float) -> float:
    return float(str(np.float32(v)))
