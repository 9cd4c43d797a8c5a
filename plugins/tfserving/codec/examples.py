"""tf.Example inputs: JSON ``examples`` into an Input proto, and an Input into a string tensor."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .json_values import FLT_MAX, b64decode, invalid, is_b64, json_text, json_type, lossy

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_feature_value(v: Any, name: str, feature: Any) -> None:
    """AddValueToFeature: one JSON value into a Feature (kinds may not mix)."""
    kind = feature.WhichOneof("kind")

    def want(k: str) -> None:
        if kind not in (None, k):
            raise invalid(f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}")

    if v is None or isinstance(v, list) or (isinstance(v, dict) and not is_b64(v)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(v)}")
    if isinstance(v, bool):
        want("int64_list")
        feature.int64_list.value.append(int(v))
    elif isinstance(v, dict):
        want("bytes_list")
        feature.bytes_list.value.append(b64decode(v))
    elif isinstance(v, str):
        want("bytes_list")
        feature.bytes_list.value.append(v.encode())
    elif isinstance(v, float):
        want("float_list")
        if math.isfinite(v) and abs(v) > FLT_MAX:
            raise lossy(v, "float")
        feature.float_list.value.append(v)
    else:
        want("int64_list")
        if v >= 1 << 63:
            raise invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(v)


def example_from_json(obj: Any) -> Any:
    """MakeExampleFromJsonObject: ``{feature: value or [values]}`` -> tf.train.Example."""
    from tensorflow.core.example import example_pb2

    if not isinstance(obj, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(obj)}")
    ex = example_pb2.Example()
    for name, content in obj.items():
        feature = ex.features.feature[name]
        for v in content if isinstance(content, list) else [content]:
            _add_feature_value(v, name, feature)
    return ex


def fill_input_from_json(doc: Mapping[str, Any], input_proto: Any) -> None:
    """FillClassifyRegressRequestFromJson: ``examples`` (and ``context``) into an Input proto."""
    has_context = "context" in doc
    if has_context:
        input_proto.example_list_with_context.context.CopyFrom(example_from_json(doc["context"]))
    examples = doc.get("examples")
    if "examples" not in doc:
        raise invalid(
            f"JSON Value: {json_text(doc)} When method is classify, key 'examples' is expected and was "
            "not found"
        )
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {json_text(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {json_text(doc)} 'examples' value is an empty array")
    target = (
        input_proto.example_list_with_context.examples if has_context else input_proto.example_list.examples
    )
    for obj in examples:
        target.add().CopyFrom(example_from_json(obj))


def serialized_examples(input_proto: Any) -> list[bytes]:
    """InputToSerializedExampleTensor: each example's bytes (context bytes first when given)."""
    which = input_proto.WhichOneof("kind")
    if which == "example_list":
        out = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif which == "example_list_with_context":
        ctx = input_proto.example_list_with_context.context.SerializeToString()
        out = [ctx + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        out = []
    if not out:
        raise invalid("Input is empty.")
    return out


def string_tensor(values: Iterable[bytes]) -> np.ndarray:
    """A 1-D string tensor (object array of bytes)."""
    items = list(values)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr
