"""A ``:predict`` body's inputs, row (``instances``) or columnar (``inputs``): FillPredictRequestFromJson."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ServingError
from .json_values import bulk, fill, invalid, is_b64, json_text, json_to_array


def _status_text(err: ServingError) -> str:
    return f"{err.code}: {err.message}"


def signature_name(doc: Mapping[str, Any]) -> str:
    """FillSignature: the optional ``signature_name`` (a string)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {json_text(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def _rows(doc: Mapping[str, Any], inputs: Mapping[str, int], strict: bool) -> dict[str, np.ndarray]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid(f"JSON Value: {json_text(doc)} Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid(f"JSON Value: {json_text(doc)} No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(inputs) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    objects = isinstance(instances[0], dict) and not is_b64(instances[0])
    names = sorted(inputs)
    if objects:
        if all(isinstance(e, dict) and set(e) == set(names) for e in instances):
            columns = {n: [e[n] for e in instances] for n in names}
        else:
            columns = None
    else:
        columns = (
            {names[0]: instances}
            if not any(isinstance(e, dict) and not is_b64(e) for e in instances)
            else None
        )
    if columns is not None and not strict:
        out = {n: bulk(v, inputs[n]) for n, v in columns.items()}
        if all(a is not None and a.ndim >= 1 for a in out.values()):
            return out  # type: ignore[return-value]
    return _rows_exact(instances, inputs, objects)


def _rows_exact(instances: list[Any], inputs: Mapping[str, int], objects: bool) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList, item by item, with its error texts."""
    names = sorted(inputs)
    tensors: dict[str, list[np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def add(i: int, name: str, item: Any, key: bool) -> None:
        where = f"Failed to process element: {i}{f' key: {name}' if key else ''} of 'instances' list."
        try:
            if name not in inputs:
                raise invalid(f"JSON object: does not have named input: {name}")
            arr = fill(item, inputs[name])
            if name not in shapes:
                shapes[name] = arr.shape
            elif math.prod(shapes[name]) != arr.size:
                raise invalid(f"Expecting tensor size: {math.prod(shapes[name])} but got: {arr.size}")
            elif shapes[name] != arr.shape:
                raise invalid(
                    f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: "
                    f"[{','.join(map(str, arr.shape))}]"
                )
        except ServingError as exc:
            raise invalid(f"{where} Error: {_status_text(exc)}") from exc
        tensors.setdefault(name, []).append(arr)

    for i, elem in enumerate(instances):
        is_object = isinstance(elem, dict) and not is_b64(elem)
        if objects:
            if not is_object:
                raise invalid(f"Expecting object but got list at item {i} of input list")
            for name, item in elem.items():
                add(i, name, item, True)
            if set(elem) != set(names):
                raise invalid(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{json_text(elem)} must only have keys: {','.join(names)}"
                )
        else:
            if is_object:
                raise invalid(f"Expecting value/list but got object at item {i} of input list")
            add(i, names[0], elem, False)
    return {n: np.stack(v) for n, v in tensors.items()}


def _columns(doc: Mapping[str, Any], inputs: Mapping[str, int], strict: bool) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: one value per named input (extra keys are ignored)."""
    value = doc["inputs"]
    if not isinstance(value, dict) or is_b64(value):
        if len(inputs) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        (name,) = inputs
        return {name: json_to_array(value, inputs[name], strict=strict)}
    out = {}
    for name in sorted(inputs):
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = json_to_array(value[name], inputs[name], strict=strict)
    return out


def parse_predict_json(
    doc: Mapping[str, Any], inputs: Mapping[str, int], *, strict: bool = True
) -> tuple[dict[str, np.ndarray], bool]:
    """A ``:predict`` body -> (named arrays, row_format), as FillPredictRequestFromJson reads it.

    ``inputs`` maps the signature's input aliases to their DataType values; ``strict=False``
    (see :func:`may_hold_booleans`) allows bulk conversion of numeric lists.
    """
    if not inputs:
        raise invalid(f"Failed to get input map for signature: {doc.get('signature_name') or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid(
                f"JSON Value: {json_text(doc)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist"
            )
        return _rows(doc, inputs, strict), True
    if "inputs" in doc:
        return _columns(doc, inputs, strict), False
    raise invalid("Missing 'inputs' or 'instances' key")
