"""The ``int8`` calibration set: the user's inputs, or a synthetic set from a fixed seed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import BoostConfig
from .errors import BadRequestError, ConfigError
from .model import ModelHandle

CALIBRATION_SEED = 20261125  # synthetic calibration is reproducible, so its artifacts cache


class Calibration:
    """The int8 calibration set: named feeds of batch 1, where they came from, and a digest."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]], source: str):
        self.feeds = tuple({k: np.ascontiguousarray(v) for k, v in f.items()} for f in feeds)
        self.source = source
        h = hashlib.sha256()
        for f in self.feeds:
            for k in sorted(f):
                h.update(k.encode())
                h.update(str(f[k].dtype).encode())
                h.update(str(f[k].shape).encode())
                h.update(f[k].tobytes())
        self.digest = h.hexdigest()[:16]


def calibration_set(handle: ModelHandle, cfg: BoostConfig,
                    given: Sequence[Mapping[str, Any]] = ()) -> Calibration:
    """The user's calibration inputs (argument, else ``cfg.calibration``), else a synthetic set.

    Each sample is split into batch-1 feeds. A sample that does not fit the model's inputs is a
    configuration error, named.
    """
    samples, source = _user_samples(cfg, given)
    if samples:
        feeds = [feed for sample in samples for feed in _split(handle, sample)]
        if not given:  # a file may hold more than calibration_samples
            feeds = feeds[:cfg.calibration_samples]
        return Calibration(feeds, f"{source}, {len(feeds)} samples")
    n = cfg.calibration_samples
    feeds = [handle.random_feeds(batch=1 if handle.batched else None, seed=CALIBRATION_SEED + i)
             for i in range(n)]
    return Calibration(feeds, f"synthetic: {n} random samples (seed {CALIBRATION_SEED})")


def _user_samples(cfg: BoostConfig, given: Sequence[Mapping[str, Any]],
                  ) -> tuple[list[dict[str, np.ndarray]], str]:
    """The calibration samples the user gave (argument, else the .npz file) and their source."""
    if given:
        return ([{k: np.asarray(v) for k, v in g.items()} for g in given],
                f"given: {len(given)} input sets")
    if not cfg.calibration:
        return [], ""
    path = Path(cfg.calibration).expanduser()
    try:
        with np.load(path, allow_pickle=False) as data:
            return [{k: data[k] for k in data.files}], f"file {path.name}"
    except (OSError, ValueError) as exc:
        raise ConfigError(f"calibration file {path} could not be read: {exc}") from exc


def _split(handle: ModelHandle, sample: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One user sample as batch-1 feeds (one feed when the model is not batched)."""
    missing = [s.name for s in handle.inputs if s.name not in sample]
    if missing:
        raise ConfigError(f"calibration inputs lack {', '.join(missing)}; the model "
                          f"takes {', '.join(s.name for s in handle.inputs)}")
    try:
        handle.check_feeds({s.name: sample[s.name] for s in handle.inputs})
    except BadRequestError as exc:
        raise ConfigError(f"calibration inputs do not fit the model: {exc}") from exc
    if not handle.batched:
        return [{s.name: sample[s.name] for s in handle.inputs}]
    n = int(sample[handle.inputs[0].name].shape[0])
    return [{s.name: sample[s.name][i:i + 1] for s in handle.inputs} for i in range(n)]
