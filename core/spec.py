"""Named tensor signatures: what a model takes and gives, and the CLI's NAME:SHAPE:DTYPE form."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import BadRequestError, ConfigError

Dim = int | str | None  # an int is static; a str names a dynamic dimension; None is anonymous

_DTYPE_ALIASES = {
    "fp32": "float32", "float": "float32", "f32": "float32", "fp16": "float16", "half": "float16",
    "fp64": "float64", "double": "float64", "bf16": "bfloat16", "int": "int64", "long": "int64",
    "i64": "int64", "i32": "int32", "bool": "bool", "u8": "uint8", "uint8": "uint8",
}


def canonical_dtype(dtype: Any) -> str:
    """Return a numpy dtype name for a numpy/torch/TF dtype or alias string."""
    name = str(dtype)
    for prefix in ("torch.", "tf.", "<dtype: '"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    name = name.rstrip("'>")
    name = _DTYPE_ALIASES.get(name, name)
    if name == "bfloat16":
        return name
    try:
        return np.dtype(name).name
    except TypeError as exc:
        raise ConfigError(f"unknown dtype {dtype!r}") from exc


@dataclasses.dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One named input or output: shape (ints, or None/str for dynamic dims) and dtype name."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return all(isinstance(d, int) and d >= 0 for d in self.shape)

    def with_batch(self, batch: int) -> TensorSpec:
        """Return this spec with dimension 0 set to ``batch``."""
        if not self.shape:
            return self
        return dataclasses.replace(self, shape=(batch, *self.shape[1:]))

    def dynamic_batch(self) -> TensorSpec:
        """Return this spec with dimension 0 named ``batch`` (dynamic)."""
        if not self.shape:
            return self
        return dataclasses.replace(self, shape=("batch", *self.shape[1:]))

    def check(self, array: np.ndarray) -> None:
        """Raise BadRequestError when ``array`` does not fit this spec."""
        if canonical_dtype(array.dtype) != self.dtype:
            raise BadRequestError(
                f"input {self.name!r}: expected dtype {self.dtype}, got {array.dtype}"
            )
        if len(array.shape) != len(self.shape) or any(
            isinstance(d, int) and d >= 0 and d != a for d, a in zip(self.shape, array.shape)
        ):
            raise BadRequestError(
                f"input {self.name!r}: expected shape {format_shape(self.shape)}, "
                f"got {format_shape(array.shape)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (dynamic dims as -1 or their name)."""
        return {"name": self.name, "shape": [-1 if d is None else d for d in self.shape],
                "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        shape = tuple(None if d == -1 else d for d in data["shape"])
        return cls(name=data["name"], shape=shape, dtype=data.get("dtype", "float32"))


def format_shape(shape: Sequence[Dim]) -> str:
    """Format a shape as ``1x3x224x224`` (dynamic dims as their name or -1)."""
    return "x".join("-1" if d is None else str(d) for d in shape) or "scalar"


_SPEC_RE = re.compile(r"^(?P<name>[^:]+):(?P<shape>[^:]*)(?::(?P<dtype>[A-Za-z0-9_]+))?$")


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``NAME:SHAPE[:DTYPE]`` such as ``x:1x3x224x224:float32`` or ``ids:-1x128:int64``."""
    m = _SPEC_RE.match(text.strip())
    if not m:
        raise ConfigError(f"bad input spec {text!r}; expected NAME:SHAPE[:DTYPE], e.g. x:1x3x224x224")
    dims: list[Dim] = []
    for part in filter(None, m["shape"].split("x")) if m["shape"] not in ("", "scalar") else []:
        if re.fullmatch(r"-?\d+", part):
            dims.append(None if int(part) < 0 else int(part))
        elif part.isidentifier():
            dims.append(part)
        else:
            raise ConfigError(f"bad dimension {part!r} in input spec {text!r}")
    return TensorSpec(name=m["name"], shape=tuple(dims), dtype=m["dtype"] or "float32")


def random_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch: int | None = None,
    like: Mapping[str, np.ndarray] | None = None,
    seed: int | None = None,
) -> dict[str, np.ndarray]:
    """Make fresh random (never all-zero) inputs that fit ``specs``.

    Dynamic dims take their size from ``like`` (the user's example inputs) when given, else 1
    for the batch dim and 8 for others. Integer inputs are drawn from the range the example
    inputs span (so token ids stay inside the vocabulary), or from [1, 10) without examples. An
    integer input whose example rows are ones then zeros (an attention mask over padding) gets
    rows of the same form with random lengths, so random inputs look like padded sequences.
    """
    rng = np.random.default_rng(seed)
    like = like or {}
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        example = like.get(spec.name)
        shape: list[int] = []
        for i, d in enumerate(spec.shape):
            if i == 0 and batch is not None:
                shape.append(batch)
            elif isinstance(d, int) and d >= 0:
                shape.append(d)
            elif example is not None and i < example.ndim:
                shape.append(int(example.shape[i]))
            else:
                shape.append(1 if i == 0 else 8)
        dtype = np.dtype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        if dtype.kind == "f":
            arr = rng.standard_normal(shape).astype(dtype)
            if example is not None and example.size:
                lo, hi = float(np.min(example)), float(np.max(example))
                if lo >= 0.0 and hi <= 1.0 and hi > lo:  # images in [0, 1]: stay there
                    arr = rng.uniform(0.0, 1.0, shape).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.integers(0, 2, shape).astype(bool)
            if arr.size:
                arr.flat[0] = True
        elif dtype.kind in "iu":
            if example is not None and example.size:
                lo, hi = int(np.min(example)), int(np.max(example))
            else:
                lo, hi = 1, 9
            if _is_padding_mask(example) and len(shape) >= 2:
                lengths = rng.integers(1, shape[-1] + 1, shape[:-1])
                arr = (np.arange(shape[-1]) < lengths[..., None]).astype(dtype)
            else:
                arr = rng.integers(lo, hi + 1, shape).astype(dtype)
            if arr.size and not arr.any():
                arr.flat[0] = 1
        else:
            raise ConfigError(f"cannot make random inputs of dtype {dtype}")
        out[spec.name] = arr
    return out


def _is_padding_mask(example: np.ndarray | None) -> bool:
    """True when ``example`` holds 0/1 rows that are all ones then zeros (and not all ones)."""
    if example is None or example.ndim < 2 or example.dtype.kind not in "iub" or not example.size:
        return False
    if not np.isin(example, (0, 1)).all():
        return False
    rows = example.reshape(-1, example.shape[-1]).astype(np.int8)
    return bool(np.all(np.diff(rows, axis=1) <= 0) and rows[:, 0].all() and not rows.all())
