"""Shim directories shipped with a SavedModel (``<dir>/yellowstone/<signature>/``): ``compile``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .choice import select_shim
from .signatures import DEFAULT_POLICY, SHIPPED_DIR, resolve_config

if TYPE_CHECKING:
    from yellowstone import BoostConfig

logger = logging.getLogger(__name__)


def prepare_signature(saved_model_dir: str | os.PathLike[str], signature: str,
                      out_dir: str | os.PathLike[str], *, policy: str = DEFAULT_POLICY,
                      config: BoostConfig | Mapping[str, Any] | None = None) -> Path | None:
    """Choose and write ``signature``'s shim directory at ``out_dir``; None when TF should serve it."""
    choice = select_shim(saved_model_dir, signature, policy=policy, config=config, out_dir=out_dir)
    logger.info("%s[%s]: %s serves: %s", saved_model_dir, signature, choice.backend, choice.reason)
    if choice.shim is None:
        return None
    choice.shim.close()
    return choice.path


def prepare(saved_model_dir: str | os.PathLike[str], out_root: str | os.PathLike[str] | None = None, *,
            signatures: Sequence[str] = ("serving_default",), policy: str = DEFAULT_POLICY,
            config: BoostConfig | Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write shim directories for ``signatures`` under ``out_root`` (default ``<dir>/yellowstone``)."""
    cfg = resolve_config(config)
    root = Path(out_root) if out_root else Path(saved_model_dir) / SHIPPED_DIR
    done = {}
    for key in signatures:
        path = prepare_signature(saved_model_dir, key, root / key, policy=policy, config=cfg)
        if path is not None:
            done[key] = path
    return done
