"""What to interpose and how to boost: ``InterposeSettings``, read from a config file and the environment.

Boost options go through the serving layer (``yellowstone.serving``), as on every server:
flags > config file > ``YELLOWSTONE_*`` > defaults, the kill switch winning.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import BoostConfig
from ..errors import ConfigError
from ..serving import boost_config, split_section
from .apis import APIS, Api, select_apis

PLUGIN_KEYS = ("apis",)  # the config file's own keys; every other key is a BoostConfig field


@dataclasses.dataclass(frozen=True, kw_only=True)
class InterposeSettings:
    """What to interpose and how to boost.

    Attributes:
        apis: the loaders to replace.
        boost: validated BoostConfig fields from the config file.
        flags: BoostConfig fields given on the ``yellowstone run`` command line.
        batch_sizes_set: batch sizes were configured; otherwise each model is benchmarked at
            the batch size of its first call.
        report_path: where to write every model's report at exit (and after each boost).
    """

    apis: tuple[Api, ...] = APIS
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_sizes_set: bool = False
    report_path: str | None = None

    def boost_config(self, batch: int | None = None) -> BoostConfig:
        """The BoostConfig for one model; ``batch`` is served unless batch sizes were configured."""
        cfg = boost_config(flags=self.flags, section=self.boost)
        if batch and not self.batch_sizes_set:
            cfg = dataclasses.replace(cfg, batch_sizes=(batch,))
        return cfg


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``yellowstone.yaml`` (or JSON): ``apis`` plus BoostConfig fields."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    if p.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping, got {type(data).__name__}")
    return data


def settings_from(environ: Mapping[str, str] | None = None, *, config_file: str | None = None,
                  apis: str | None = None, report_path: str | None = None,
                  flags: Mapping[str, Any] | None = None) -> InterposeSettings:
    """Resolve settings: explicit arguments > config file > ``YELLOWSTONE_*`` environment.

    ``environ`` supplies the interposer's own variables (``YELLOWSTONE_CONFIG``,
    ``YELLOWSTONE_INTERPOSE_APIS``, ``YELLOWSTONE_INTERPOSE_REPORT``); boost options in the
    environment are read by the core when each model is boosted.

    Raises:
        ConfigError: the config file is unreadable or holds an unknown key or a bad value.
    """
    env = os.environ if environ is None else environ
    config_file = config_file or env.get("YELLOWSTONE_CONFIG") or None
    data = read_config_file(config_file) if config_file else {}
    section = split_section(data, PLUGIN_KEYS, where=f"config file {config_file}")
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    file_apis = section.plugin.get("apis")
    chosen = select_apis(apis if apis is not None else
                         file_apis if file_apis is not None else
                         env.get("YELLOWSTONE_INTERPOSE_APIS"))
    return InterposeSettings(
        apis=chosen, boost=dict(section.boost), flags=given,
        batch_sizes_set=_batch_sizes_set(section.boost, given),
        report_path=report_path or env.get("YELLOWSTONE_INTERPOSE_REPORT") or None)


def _batch_sizes_set(section: Mapping[str, Any], flags: Mapping[str, Any]) -> bool:
    """Whether any layer sets batch sizes (the environment's value as the core reads it)."""
    if "batch_sizes" in section or "batch_sizes" in flags:
        return True
    return BoostConfig.from_env().batch_sizes != BoostConfig().batch_sizes
