"""Read the ``yellowstone:`` section of a TorchServe model-config.yaml into plugin and boost options.

The section holds the plugin's own keys (:data:`PLUGIN_KEYS`: which handler to boost, example
inputs, a shipped artifact directory) and every :class:`yellowstone.BoostConfig` field; the
serving layer (``yellowstone.serving.split_section``) splits them and rejects anything else,
listing the valid options. TorchServe's own keys (``batchSize``, ``minWorkers``) add the batch
sizes and the worker count the boost plans for.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from yellowstone import serving
from yellowstone.config import BoostConfig
from yellowstone.errors import ConfigError
from yellowstone.spec import TensorSpec

SECTION = "yellowstone"
WHERE = f"model-config.yaml '{SECTION}' section"
DEFAULT_HANDLER = "base_handler"
PLUGIN_KEYS = ("handler", "input_shape", "input_dtype", "inputs", "examples", "artifact_dir",
               "fused_preprocess")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginConfig:
    """The ``yellowstone:`` section, split into the plugin's keys and BoostConfig fields.

    Attributes:
        handler: the handler being boosted, as TorchServe's ``--handler`` takes it: a built-in
            name (``image_classifier``), ``file.py`` or ``file.py:Class`` from the archive.
        inputs: example inputs to boost with, in call order; empty means "from the first
            request". A ``-1`` or named dim past the batch (``input_ids:-1xseq=1..256:int64``)
            stays dynamic in the compiled model, within its range.
        examples: an ``.npz`` of real inputs inside the archive (one array per input name, as
            the model is called): the model is boosted on them at load, validation runs on
            them too, and random inputs are drawn like them (token ids in their range).
        artifact_dir: a precompiled artifact directory inside the archive (relative to it).
        fused_preprocess: compile a recognised stock image pipeline (``image_classifier``'s
            Resize -> CenterCrop -> ToTensor -> Normalize) into the model; ``false`` keeps the
            handler's own preprocessing.
        boost: the remaining keys, validated ``BoostConfig`` fields.
    """

    handler: str = DEFAULT_HANDLER
    inputs: tuple[TensorSpec, ...] = ()
    examples: str | None = None
    artifact_dir: str | None = None
    fused_preprocess: bool = True
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _input_specs(plugin: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    """``inputs`` (any form ``parse_specs`` takes), or ``input_shape`` + ``input_dtype`` as one spec."""
    shape, dtype, many = (plugin.get(k) for k in ("input_shape", "input_dtype", "inputs"))
    if shape is None:
        if dtype is not None:
            raise ConfigError(f"{WHERE}: input_dtype needs input_shape (or give a dtype per "
                              "input in 'inputs')")
        return serving.parse_specs(many, where=f"{WHERE}: inputs")
    if many is not None:
        raise ConfigError(f"{WHERE}: give either input_shape or inputs, not both")
    return serving.parse_specs([{"shape": shape, "dtype": dtype or "float32"}],
                               where=f"{WHERE}: input_shape")


def _flag(value: Any, key: str) -> bool:
    """A YAML boolean (or on/off, true/false, yes/no as a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "on", "yes", "1", "auto"):
        return True
    if text in ("false", "off", "no", "0"):
        return False
    raise ConfigError(f"{WHERE}: {key} must be true or false, got {value!r}")


def parse_section(section: Mapping[str, Any] | None) -> PluginConfig:
    """Split and validate a ``yellowstone:`` section; raise ConfigError naming the bad key.

    The BoostConfig part is validated here too, so a typo fails at archive time or model load
    with the list of valid options (boost options and plugin keys), never silently.
    """
    split = serving.split_section(section, PLUGIN_KEYS, where=WHERE)
    plugin = split.plugin
    artifact_dir = plugin.get("artifact_dir")
    return PluginConfig(handler=str(plugin.get("handler") or DEFAULT_HANDLER),
                        inputs=_input_specs(plugin),
                        examples=str(plugin["examples"]) if plugin.get("examples") else None,
                        artifact_dir=str(artifact_dir) if artifact_dir else None,
                        fused_preprocess=_flag(plugin.get("fused_preprocess", True),
                                               "fused_preprocess"),
                        boost=dict(split.boost))


def min_workers(yaml_config: Mapping[str, Any]) -> int | None:
    """``minWorkers`` of model-config.yaml: the workers TorchServe starts for this model."""
    value = yaml_config.get("minWorkers")
    if value in (None, ""):
        return None
    try:
        workers = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model-config.yaml minWorkers must be an integer, got {value!r}") from exc
    return workers if workers > 0 else None


def resolve(yaml_config: Mapping[str, Any] | None,
            batch_size: int | None = None) -> tuple[PluginConfig, BoostConfig]:
    """The plugin settings and the ``BoostConfig`` a worker serves with.

    The section's boost options are the server-config layer of ``yellowstone.serving
    .boost_config`` (over ``YELLOWSTONE_*``, over the defaults; ``YELLOWSTONE_BACKEND=native``
    wins). Unless the section or ``YELLOWSTONE_BATCH_SIZES`` says otherwise, TorchServe's
    ``batchSize`` (``batch_size``, the worker's own) adds a batch size to 1: a default, so the
    environment overrides it as it overrides the core's. ``minWorkers`` is the worker count;
    without it TorchServe starts one worker per core, which stands unless
    ``YELLOWSTONE_WORKERS`` says otherwise.
    """
    yaml_config = yaml_config or {}
    settings = parse_section(yaml_config.get(SECTION))
    section = dict(settings.boost)
    if "batch_sizes" not in section and "YELLOWSTONE_BATCH_SIZES" not in os.environ:
        try:
            batch = int(batch_size or yaml_config.get("batchSize") or 1)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model-config.yaml batchSize must be an integer, got "
                              f"{yaml_config.get('batchSize')!r}") from exc
        section["batch_sizes"] = sorted({1, batch})
    workers = min_workers(yaml_config)
    if workers is not None:
        section.setdefault("workers", workers)
    config = serving.boost_config(section=section)
    if "workers" not in section and not os.environ.get("YELLOWSTONE_WORKERS"):
        # Neither the section, minWorkers nor the environment: TorchServe's default, one
        # worker per core (the JVM counts cores cgroup-aware, as host_cores does).
        config = serving.boost_config(section={**section, "workers": serving.host_cores()})
    return settings, config
