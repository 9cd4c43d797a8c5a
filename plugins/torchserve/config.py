"""Read the ``yellowstone:`` section of a TorchServe model-config.yaml into plugin and boost options.

The section holds the plugin's own keys (which handler to boost, example input shapes, a shipped
artifact directory) and every :class:`yellowstone.BoostConfig` field; anything else is rejected
with BoostConfig's own error, which lists the valid options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from yellowstone.errors import ConfigError

SECTION = "yellowstone"
DEFAULT_HANDLER = "base_handler"
PLUGIN_KEYS = ("handler", "input_shape", "input_dtype", "inputs", "artifact_dir")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputSpec:
    """One example input the model is called with: shape (batch first) and dtype."""

    name: str | None
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginConfig:
    """The ``yellowstone:`` section, split into the plugin's keys and BoostConfig fields.

    Attributes:
        handler: the handler being boosted, as TorchServe's ``--handler`` takes it: a built-in
            name (``image_classifier``), ``file.py`` or ``file.py:Class`` from the archive.
        inputs: example inputs to boost with; empty means "from the first request".
        artifact_dir: a precompiled artifact directory inside the archive (relative to it).
        boost: the remaining keys, for ``BoostConfig.from_dict``.
    """

    handler: str = DEFAULT_HANDLER
    inputs: tuple[InputSpec, ...] = ()
    artifact_dir: str | None = None
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v.strip()]
    if not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{what} must be a list of positive integers, got {value!r}")
    try:
        dims = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a list of positive integers, got {value!r}") from exc
    if min(dims) < 1:
        raise ConfigError(f"{what} must be a list of positive integers, got {value!r}")
    return dims


def parse_section(section: Mapping[str, Any] | None) -> PluginConfig:
    """Split and validate a ``yellowstone:`` section; raise ConfigError naming the bad key.

    The BoostConfig part is validated here too (``BoostConfig.from_dict``), so a typo fails at
    archive time or model load with the list of valid options, never silently.
    """
    from yellowstone import BoostConfig

    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"the '{SECTION}' section of model-config.yaml must be a mapping")
    data = {str(k).replace("-", "_"): v for k, v in section.items()}
    handler = str(data.pop("handler", None) or DEFAULT_HANDLER)
    dtype = str(data.pop("input_dtype", "float32"))
    inputs: list[InputSpec] = []
    shape = data.pop("input_shape", None)
    if shape is not None:
        inputs.append(InputSpec(name=None, shape=_shape(shape, "input_shape"), dtype=dtype))
    many = data.pop("inputs", None)
    if many is not None:
        if inputs:
            raise ConfigError("give either input_shape or inputs, not both")
        if not isinstance(many, Sequence) or isinstance(many, str):
            raise ConfigError("inputs must be a list of {name, shape, dtype} mappings")
        for i, item in enumerate(many):
            if not isinstance(item, Mapping) or "shape" not in item:
                raise ConfigError(f"inputs[{i}] must be a mapping with a 'shape'")
            inputs.append(InputSpec(name=item.get("name"),
                                    shape=_shape(item["shape"], f"inputs[{i}].shape"),
                                    dtype=str(item.get("dtype", "float32"))))
    artifact_dir = data.pop("artifact_dir", None)
    try:
        BoostConfig.from_dict(data)  # reject unknown keys / bad values now, with its message
    except ConfigError as exc:
        raise ConfigError(f"model-config.yaml '{SECTION}' section: {exc} "
                          f"(plugin keys: {', '.join(PLUGIN_KEYS)})") from exc
    return PluginConfig(handler=handler, inputs=tuple(inputs),
                        artifact_dir=str(artifact_dir) if artifact_dir else None, boost=data)
