"""Input specs as servers' configs give them, as ``TensorSpec``; random example feeds for them.

Accepted forms, wherever a plugin reads specs (``model-config.yaml``, ``yellowstone.yaml``,
``--input`` flags): ``"NAME:SHAPE[:DTYPE]"`` strings (``ids:-1xseq=1..512:int64``), mappings
``{name, shape, dtype}`` (shape as a list or ``1x3x224x224``; ``-1`` or a name is dynamic,
``NAME=LO..HI`` bounds a named dim, whose range is otherwise 1..512), or a bare shape list for
a model called positionally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..spec import Range, TensorSpec, parse_input_spec, parse_shape, random_inputs


def _ranges(value: Any, where: str) -> dict[str, Range]:
    """A mapping's ``ranges`` entry (as ``TensorSpec.to_dict`` writes it): name -> [lo, hi]."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: 'ranges' must map dim names to [lo, hi], got {value!r}")
    out: dict[str, Range] = {}
    for name, bounds in value.items():
        if not (isinstance(bounds, Sequence) and not isinstance(bounds, str) and len(bounds) == 2):
            raise ConfigError(f"{where}: range of {name!r} must be [lo, hi], got {bounds!r}")
        try:
            out[str(name)] = (int(bounds[0]), int(bounds[1]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: range of {name!r} must be [lo, hi], got {bounds!r}") from exc
    return out


def parse_spec(item: Any, *, where: str, index: int = 0) -> TensorSpec:
    """One spec from a string, a mapping, or a bare shape list (named ``input<index>``)."""
    if isinstance(item, str):
        return parse_input_spec(item)
    if isinstance(item, Mapping):
        if "shape" not in item:
            raise ConfigError(f"{where}: input {item!r} has no 'shape'")
        name = item.get("name")
        dims, ranges = parse_shape(item["shape"], where=where)
        ranges = {**_ranges(item.get("ranges"), where), **ranges}
        return TensorSpec(name=str(name) if name else f"input{index}", shape=dims,
                          dtype=str(item.get("dtype", "float32")), ranges=ranges)
    if isinstance(item, Sequence):
        dims, ranges = parse_shape(item, where=where)
        return TensorSpec(name=f"input{index}", shape=dims, ranges=ranges)
    raise ConfigError(f"{where}: bad input {item!r}; expected 'NAME:SHAPE[:DTYPE]', a mapping "
                      "with name/shape/dtype, or a shape")


def parse_specs(items: Sequence[Any] | None, *, where: str) -> tuple[TensorSpec, ...]:
    """Parse a list of specs (each in any accepted form); None or empty gives ``()``."""
    if not items:
        return ()
    if isinstance(items, str | bytes | Mapping):
        raise ConfigError(f"{where}: inputs must be a list")
    return tuple(parse_spec(item, where=f"{where}[{i}]", index=i) for i, item in enumerate(items))


def nested_shape(value: Any) -> tuple[int, ...]:
    """The shape of nested JSON lists along the chain of first elements.

    Ragged lists are not checked here: the tensor conversion refuses them.
    """
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def example_feeds(specs: Sequence[TensorSpec], *, seed: int | None = None,
                  like: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Fresh random (never all-zero) feeds that fit ``specs``; see ``yellowstone.spec.random_inputs``."""
    return random_inputs(specs, seed=seed, like=like)


def read_examples(path: str | os.PathLike[str] | None) -> dict[str, np.ndarray] | None:
    """The named example arrays of an ``.npz`` (one array per input name), or None.

    Servers take real example inputs this way (``examples:`` in a config section): validation
    runs on them too, and random inputs are drawn like them (token ids in their range,
    attention masks over padding).
    """
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"examples file {path} could not be read: {exc}") from exc
