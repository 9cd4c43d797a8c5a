"""Turn KServe V1 and V2 (Open Inference Protocol) requests into named numpy feeds, and back.

Every problem with a request raises ``yellowstone.errors.BadRequestError``; the predictor
answers it through the serving layer's status (HTTP 400, ``INVALID_ARGUMENT``) and keeps serving.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from yellowstone.errors import BadRequestError
from yellowstone.serving.inputs import nested_shape
from yellowstone.spec import TensorSpec

# numpy dtype name <-> Open Inference Protocol datatype.
_V2_DATATYPES = {
    "bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "BYTES",
    "bytes": "BYTES", "str": "BYTES",
}


def v2_datatype(dtype: Any) -> str:
    """The V2 datatype for a numpy dtype or dtype name (``float32`` -> ``FP32``)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:  # bfloat16 and other names numpy does not know
        name = str(dtype)
    if name.startswith(("bytes", "str")):
        return "BYTES"
    try:
        return _V2_DATATYPES[name]
    except KeyError as exc:
        raise BadRequestError(f"dtype {name} has no Open Inference Protocol datatype") from exc


def tensor_metadata(name: str, shape: Sequence[Any], dtype: Any) -> dict[str, Any]:
    """A metadata entry: name, datatype, shape with -1 for every dynamic dimension."""
    return {"name": name, "datatype": v2_datatype(dtype),
            "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in shape]}


# -- V1 -------------------------------------------------------------------------------------
def _as_dtype(values: Any, spec: TensorSpec) -> np.ndarray:
    """JSON values to an array of the input's dtype; never a silent lossy cast."""
    want = np.dtype("float32" if spec.dtype == "bfloat16" else spec.dtype)
    return as_array(values, want, f"input {spec.name!r}")


def as_array(values: Any, want: np.dtype, what: str) -> np.ndarray:
    """JSON values (nested lists of numbers, booleans or strings) to an array of dtype ``want``.

    Never a silent lossy cast: strings for numbers, fractions for integers, numbers for booleans
    and integers out of ``want``'s range are the client's error. ``what`` names the tensor in it.
    """
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged nesting
        raise BadRequestError(f"{what}: values do not form a tensor: {exc}") from exc
    if want.kind in "OSU":
        return arr.astype(object)
    if arr.size == 0:  # [] reads as float64, whatever the tensor's dtype
        return arr.astype(want)
    if arr.dtype.kind in "OSU" or arr.dtype.kind not in "biuf":
        raise BadRequestError(f"{what}: expected {want.name} numbers, got "
                              f"{'strings' if arr.dtype.kind in 'SU' else arr.dtype.name}")
    if want.kind in "iu" and arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
        raise BadRequestError(f"{what}: expected integers ({want.name}), got fractions")
    if want.kind == "b" and arr.dtype.kind != "b":
        raise BadRequestError(f"{what}: expected booleans, got {arr.dtype.name}")
    if want.kind in "iu" and arr.size and arr.dtype.kind in "iuf":
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            raise BadRequestError(f"{what}: values out of the range of {want.name} "
                                  f"[{info.min}, {info.max}]")
    return arr.astype(want, copy=False)


def v1_body(body: Any) -> Any:
    """A V1 body as JSON values: parsed when it came as bytes or text (no JSON content-type)."""
    if not isinstance(body, (bytes, str)):
        return body
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"the request body is not JSON: {exc}") from exc


def decode_v1(body: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """V1 body to feeds.

    ``{"instances": [...]}``: one row per instance; a row is the input's value for a one-input
    model, or a ``{input name: value}`` mapping. ``{"inputs": ...}`` (columnar): the whole
    tensor for a one-input model, or ``{input name: tensor}``.
    """
    body = v1_body(body)
    if not isinstance(body, Mapping):
        raise BadRequestError("expected a JSON object with 'instances' or 'inputs'")
    names = [s.name for s in specs]
    by_name = {s.name: s for s in specs}
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise BadRequestError("'instances' must be a non-empty list")
        if all(isinstance(r, Mapping) for r in rows):
            columns: dict[str, Any] = {}
            for name in {k for r in rows for k in r}:
                if name not in by_name:
                    raise BadRequestError(f"unknown input {name!r}; inputs are {', '.join(names)}")
                if any(name not in r for r in rows):
                    raise BadRequestError(f"input {name!r} is missing from some instances")
                columns[name] = [r[name] for r in rows]
        elif len(specs) == 1:
            columns = {names[0]: rows}
        else:
            raise BadRequestError(f"the model takes {len(specs)} inputs ({', '.join(names)}): each "
                                  f"instance must be a mapping of input name to value")
    elif "inputs" in body:
        cols = body["inputs"]
        if isinstance(cols, Mapping):
            columns = dict(cols)
            unknown = sorted(set(columns) - set(names))
            if unknown:
                raise BadRequestError(f"unknown input(s) {', '.join(unknown)}; inputs are "
                                      f"{', '.join(names)}")
        elif len(specs) == 1:
            columns = {names[0]: cols}
        else:
            raise BadRequestError(f"'inputs' must map each of {', '.join(names)} to a tensor")
    else:
        raise BadRequestError("expected 'instances' or 'inputs' in the request body")
    return {name: _as_dtype(values, by_name[name]) for name, values in columns.items()}


def v1_shape_groups(body: Any) -> list[list[int]] | None:
    """Instances of a V1 body grouped by their shapes, where they differ; None otherwise.

    Sentences of several lengths in one ``instances`` list do not stack into one tensor; each
    group of equal shapes (in order of first appearance) is served as its own batch and every
    instance is answered in its place, with nothing padded, so no padding can change an answer.
    None when the (parsed: :func:`v1_body`) body is not an ``instances`` list, or its instances
    already agree.
    """
    rows = body.get("instances") if isinstance(body, Mapping) else None
    if not isinstance(rows, list) or len(rows) < 2:
        return None
    groups: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        key = (tuple(sorted((k, nested_shape(v)) for k, v in row.items()))
               if isinstance(row, Mapping) else nested_shape(row))
        groups.setdefault(key, []).append(i)
    return list(groups.values()) if len(groups) > 1 else None


def encode_v1(outputs: Sequence[np.ndarray], names: Sequence[str], *, rows: bool) -> dict:
    """Outputs to ``{"predictions": ...}``: one entry per instance (``rows``) or whole tensors.

    One output gives its values; several give ``{output name: value}`` per instance.
    """
    def plain(a: np.ndarray) -> Any:
        if a.dtype.kind in "OS":
            return np.vectorize(lambda v: v.decode("utf-8", "replace")
                                if isinstance(v, bytes) else v, otypes=[object])(a).tolist()
        return a.tolist()

    if len(outputs) == 1:
        return {"predictions": plain(outputs[0])}
    if rows:
        cols = [plain(o) for o in outputs]
        return {"predictions": [dict(zip(names, vals)) for vals in zip(*cols)]}
    return {"predictions": {n: plain(o) for n, o in zip(names, outputs)}}


# -- V2 -------------------------------------------------------------------------------------
def decode_v2(request: InferRequest, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """V2 request (REST or gRPC) to feeds; names and datatypes must match the model's."""
    by_name = {s.name: s for s in specs}
    feeds: dict[str, np.ndarray] = {}
    for inp in request.inputs:
        spec = by_name.get(inp.name)
        if spec is None:
            raise BadRequestError(f"unknown input {inp.name!r}; inputs are {', '.join(by_name)}")
        if inp.name in feeds:
            raise BadRequestError(f"input {inp.name!r} is given twice")
        want = v2_datatype(spec.dtype)
        if inp.datatype != want:
            raise BadRequestError(f"input {inp.name!r}: expected datatype {want}, got "
                                  f"{inp.datatype!r}")
        shape = request_shape(inp.name, inp.shape)
        try:
            arr = inp.as_numpy()
        except (InvalidInput, ValueError, TypeError) as exc:
            raise BadRequestError(f"input {inp.name!r}: data does not fit shape {shape} "
                                  f"({want}): {exc}") from exc
        if tuple(arr.shape) != shape:  # numpy would read a -1 as "whatever fits"
            raise BadRequestError(f"input {inp.name!r}: data has shape {list(arr.shape)}, "
                                  f"the request says {list(shape)}")
        feeds[inp.name] = arr
    return feeds


def request_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A request's shape: a list of non-negative integers (``-1`` is for metadata, not data)."""
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes):
        raise BadRequestError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    bad = [d for d in shape if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0]
    if bad:
        raise BadRequestError(f"input {name!r}: shape {list(shape)!r} has "
                              f"{'a bad dimension' if len(bad) == 1 else 'bad dimensions'} "
                              f"{', '.join(map(repr, bad))}; each must be an integer >= 0")
    return tuple(int(d) for d in shape)


def requested_outputs(request: InferRequest, names: Sequence[str]) -> None:
    """Reject requested outputs the model does not have."""
    for out in request.request_outputs or ():
        if out.name not in names:
            raise BadRequestError(f"unknown output {out.name!r}; outputs are {', '.join(names)}")


def encode_v2(request: InferRequest, model_name: str, outputs: Sequence[np.ndarray],
              names: Sequence[str], parameters: Mapping[str, Any] | None = None) -> InferResponse:
    """Outputs to an InferResponse carrying each output's name, shape and datatype.

    Over REST each output keeps its array: ``InferResponse.to_rest`` encodes it once, binary or
    JSON as the request's ``binary_data`` parameters ask. Over gRPC it is encoded here (kserve
    0.21's ``to_grpc`` tests an array's truth value and fails).
    """
    binary = bool(request.use_binary_outputs)
    infer_outputs = []
    for name, out in zip(names, outputs):
        item = InferOutput(name=name, shape=list(out.shape), datatype=v2_datatype(out.dtype))
        array = out.astype(object) if out.dtype.kind in "SU" else out
        if request.from_grpc:
            item.set_data_from_numpy(array, binary_data=binary)
        else:
            item.data = array
        infer_outputs.append(item)
    return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=model_name,
                         infer_outputs=infer_outputs, from_grpc=request.from_grpc,
                         parameters=dict(parameters) if parameters else None,
                         use_binary_outputs=binary,
                         requested_outputs=request.request_outputs)
