"""Which SignatureDefs the shim can run, how the core loads one, and the shim policies."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yellowstone.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from yellowstone import BoostConfig
    from yellowstone.model import ModelHandle
    from yellowstone.spec import TensorSpec

SHIPPED_DIR = "yellowstone"  # <version>/yellowstone/<signature>/: shim directories shipped with a model
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SHIM_DTYPES = {"float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
               "uint32", "uint64", "bool"}
SHIM_BACKENDS = ("openvino", "onnxruntime")  # the C paths the shim runs
TENSORFLOW = "tensorflow"
# auto: the fastest valid C path, only where it beats TensorFlow; always: the fastest valid C path.
POLICIES = ("always", "auto", "off")
DEFAULT_POLICY = "auto"


def read_meta_graph(saved_model_dir: str | os.PathLike[str], tags: Sequence[str] = ("serve",)) -> Any:
    """The MetaGraphDef tagged ``serve`` of a SavedModel (its SignatureDefs, as TF Serving reads)."""
    from tensorflow.core.protobuf import saved_model_pb2

    root = Path(saved_model_dir)
    sm = saved_model_pb2.SavedModel()
    if (root / "saved_model.pb").exists():
        sm.ParseFromString((root / "saved_model.pb").read_bytes())
    elif (root / "saved_model.pbtxt").exists():
        from google.protobuf import text_format

        text_format.Parse((root / "saved_model.pbtxt").read_text(), sm)
    else:
        raise ModelLoadError(f"{root} has no saved_model.pb")
    for mg in sm.meta_graphs:
        if set(tags) <= set(mg.meta_info_def.tags):
            return mg
    raise ModelLoadError(f"{root}: no MetaGraphDef with tags {list(tags)}")


def boostable(sig: Any) -> bool:
    """True when a SignatureDef is a predict signature over numeric tensors (what the shim runs)."""
    from tensorflow.python.framework import dtypes

    if sig.method_name and sig.method_name != PREDICT_METHOD:
        return False
    for info in list(sig.inputs.values()) + list(sig.outputs.values()):
        if info.dtype == 0 or dtypes.as_dtype(info.dtype).name not in SHIM_DTYPES:
            return False
    return bool(sig.inputs) and bool(sig.outputs)


def declared_shape(info: Any) -> list[int] | None:
    """A TensorInfo's static shape (-1 for unknown dims), None for unknown rank."""
    if not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank:
        return None
    return [int(d.size) for d in info.tensor_shape.dim]


def input_specs(sig: Any) -> list[TensorSpec] | None:
    """Input specs that keep a signature's dynamic dims beyond the batch dynamic; None: there are none.

    A ``-1`` at axis k > 0 becomes the named dim ``dim<k>`` (inputs dynamic at one axis share its
    size, as ``input_ids`` and ``attention_mask`` do), bounded by the core's default range.
    """
    from tensorflow.python.framework import dtypes

    from yellowstone.spec import TensorSpec

    specs, dynamic = [], False
    for alias in sorted(sig.inputs):
        shape = declared_shape(sig.inputs[alias])
        if shape is None:
            return None
        dims: list[int | str | None] = [
            None if d < 0 and i == 0 else f"dim{i}" if d < 0 else d for i, d in enumerate(shape)
        ]
        dynamic = dynamic or any(isinstance(d, str) for d in dims)
        dtype = dtypes.as_dtype(sig.inputs[alias].dtype).name
        specs.append(TensorSpec(name=alias, shape=tuple(dims), dtype=dtype))
    return specs if dynamic else None


def load_signature(saved_model_dir: str | os.PathLike[str], signature: str, sig: Any) -> ModelHandle:
    """The core's handle on one signature, its dynamic dims beyond the batch kept dynamic."""
    import yellowstone

    return yellowstone.load_model(str(saved_model_dir), signature=signature, input_specs=input_specs(sig))


def resolve_config(config: BoostConfig | Mapping[str, Any] | None) -> BoostConfig:
    """A BoostConfig as given, or one from a mapping over ``YELLOWSTONE_*`` over the defaults."""
    from yellowstone import BoostConfig
    from yellowstone.serving import boost_config

    return config if isinstance(config, BoostConfig) else boost_config(section=config)


def shim_plan(policy: str, cfg: BoostConfig) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(candidates to boost with, C paths to try, why none) under ``policy``; empty when TF serves."""
    if policy not in POLICIES:
        raise ConfigError(f"shim policy {policy!r} is not one of {', '.join(POLICIES)}")
    if policy == "off":
        return (), (), "the shim is off"
    if cfg.killed:
        return (), (), "boosting is off (backends=native)"
    paths = tuple(b for b in SHIM_BACKENDS if cfg.backends == ("auto",) or b in cfg.backends)
    if not paths:
        why = f"backends={','.join(cfg.backends)} leaves out {' and '.join(SHIM_BACKENDS)}, the shim's"
        return (), (), why
    return (tuple(cfg.backends) if policy == "auto" else paths), paths, ""
