"""One parser from a server's config section, flags and environment to plugin keys + ``BoostConfig``.

Every surface spells a boost option by its ``BoostConfig`` field name: ``time_budget_s`` in a
TorchServe ``model-config.yaml``, a KServe ``yellowstone.yaml``, ``--time_budget_s`` on any
command line, ``YELLOWSTONE_TIME_BUDGET_S`` in the environment. Precedence, highest first:
flags > config section > environment > defaults; ``YELLOWSTONE_BACKEND=native`` (any case)
always wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Collection, Mapping
from typing import Any

from ..config import DISPATCHES, PRECISIONS, TASKS, BoostConfig, resolve_config
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Section:
    """A config section split in two.

    Attributes:
        plugin: the plugin's own keys (which handler, input specs, artifact directory, ...).
        boost: the ``BoostConfig`` fields, already validated; pass to ``boost_config``.
    """

    plugin: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def normalise_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """``time-budget-s`` and ``time_budget_s`` are one key."""
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def split_section(section: Mapping[str, Any] | None, plugin_keys: Collection[str], *,
                  where: str) -> Section:
    """Split ``section`` into the plugin's keys and validated ``BoostConfig`` fields.

    Raises:
        ConfigError: the section is not a mapping, or holds an unknown key or a bad value; the
            message names ``where`` and lists both the boost options and the plugin's keys.
    """
    if section is None:
        return Section()
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(section).__name__}")
    data = normalise_keys(section)
    plugin = {k: data.pop(k) for k in list(data) if k in plugin_keys}
    try:
        BoostConfig.from_dict(data)  # reject unknown keys and bad values now, by name
    except ConfigError as exc:
        keys = f" (plugin keys: {', '.join(plugin_keys)})" if plugin_keys else ""
        raise ConfigError(f"{where}: {exc}{keys}") from exc
    return Section(plugin=plugin, boost=data)


def boost_config(*, flags: Mapping[str, Any] | None = None,
                 section: Mapping[str, Any] | None = None, server: bool = True) -> BoostConfig:
    """The ``BoostConfig`` for flags over a section over ``YELLOWSTONE_*`` over defaults.

    ``None`` values in ``flags`` mean "not given" and leave the lower layers alone. For a
    server (``server=True``) ``spin_wait`` defaults to false: the request path shares the cores
    with the backend's threads (see ``BoostConfig.spin_wait``); any layer may still set it.
    """
    given = {k: v for k, v in normalise_keys(flags or {}).items() if v is not None}
    section = normalise_keys(section or {})
    if server and "spin_wait" not in section and "YELLOWSTONE_SPIN_WAIT" not in os.environ:
        section["spin_wait"] = False
    return resolve_config(section, **given)


# Field -> (argparse type, choices, help). Fields a server cannot take as a flag are absent.
_FLAG_HELP: dict[str, tuple[Any, tuple[str, ...] | None, str]] = {
    "backends": (str, None, "candidate backends in order, comma-separated, or 'auto'; 'native' "
                            "turns boosting off"),
    "precision": (str, PRECISIONS, "fp32 (default); bf16/fp16/int8 are accepted only when they "
                                   "validate"),
    "task": (str, TASKS, "what the outputs mean: the accuracy measure for bf16/fp16/int8"),
    "calibration": (str, None, "an .npz of real inputs for int8 calibration (one array per "
                               "input name, samples on axis 0)"),
    "calibration_samples": (int, None, "how many samples int8 calibration uses"),
    "batch_sizes": (str, None, "batch sizes to serve, e.g. 1,8"),
    "dynamic_batch": (str, None, "compile a dynamic batch dimension where the backend can "
                                 "(true/false)"),
    "static_buckets": (str, None, "with a dynamic batch, also one fixed-shape artifact per served "
                                  "size where the backend runs those faster (true/false)"),
    "time_budget_s": (float, None, "benchmark seconds per candidate and batch size"),
    "validation_rounds": (int, None, "fresh random input sets each candidate is checked on"),
    "cache": (str, None, "use the compile cache (true/false)"),
    "cache_dir": (str, None, "compile cache directory (YELLOWSTONE_CACHE_DIR)"),
    "max_runtime_failures": (int, None, "failed compiled calls in a row before the circuit "
                                        "breaker opens"),
    "breaker_backoff_s": (float, None, "seconds the circuit breaker stays open before a trial call"),
    "breaker_backoff_max_s": (float, None, "cap on the doubling breaker back-off"),
    "call_timeout_s": (float, None, "deadline per compiled call; past it the framework answers "
                                    "(0: off)"),
    "dispatch": (str, DISPATCHES, "per_batch: the fastest backend per batch size; single: one"),
    "dispatch_memory_mb": (int, None, "on-disk budget for the per-batch backends' artifacts "
                                      "(0: no limit)"),
    "threads": (int, None, "intra-op threads per backend (0: cores // workers)"),
    "workers": (int, None, "worker processes sharing this host's cores"),
    "follow_load": (str, None, "with several workers, a worker alone busy uses every core "
                               "(true/false)"),
    "spin_wait": (str, None, "backend threads may spin between calls (true/false; servers: "
                             "false)"),
}


def add_boost_flags(parser: argparse.ArgumentParser, *, exclude: Collection[str] = (),
                    prefix: str = "--") -> None:
    """Add one flag per ``BoostConfig`` field, spelled as the field (``--time_budget_s``).

    Every default is None ("not given"), so the config section and environment still apply.
    """
    group = parser.add_argument_group("boost options (BoostConfig fields)")
    for name, (typ, choices, text) in _FLAG_HELP.items():
        if name not in exclude:
            group.add_argument(f"{prefix}{name}", dest=name, type=typ, choices=choices,
                               default=None, help=text)


def boost_flags(args: argparse.Namespace, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """The ``BoostConfig`` fields given on the command line (those added by add_boost_flags).

    Pass the same ``exclude`` as to :func:`add_boost_flags`: a server's own flag of the same
    name (KServe's ``--workers``) is then not read as a boost option.
    """
    return {k: getattr(args, k) for k in _FLAG_HELP
            if k not in exclude and getattr(args, k, None) is not None}
