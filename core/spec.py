"""Named tensor signatures: what a model takes and gives, and the CLI's NAME:SHAPE:DTYPE form.

A dimension is an int (static), a name (dynamic; inputs that share a name share its size), or
None (dynamic, anonymous). A named dimension may carry a range, written ``seq=1..512``; one
without a range spans ``DEFAULT_RANGE`` (1..512), except the batch dimension (``batch``),
which is unbounded unless a range is given.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import BadRequestError, ConfigError

Dim = int | str | None  # an int is static; a str names a dynamic dimension; None is anonymous
Range = tuple[int, int]  # inclusive bounds of a named dynamic dimension

BATCH = "batch"  # the name of dimension 0 of a batched model's inputs
DEFAULT_RANGE: Range = (1, 512)  # the range of a named dimension given without one

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
    """One named input or output: shape (ints, or None/str for dynamic dims) and dtype name.

    ``ranges`` bounds named dims (name -> inclusive ``(lo, hi)``); a named dim without an entry
    spans ``DEFAULT_RANGE`` (1..512), the batch dim (``batch``) is unbounded. Requests outside a
    range are refused by :meth:`check`.
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    ranges: Mapping[str, Range] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        ranges: dict[str, Range] = {}
        for dim, bounds in dict(self.ranges).items():
            lo, hi = (int(b) for b in bounds)
            _check_range(str(dim), lo, hi, f"input {self.name!r}")
            ranges[str(dim)] = (lo, hi)
        object.__setattr__(self, "ranges", ranges)

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return all(isinstance(d, int) and d >= 0 for d in self.shape)

    def range_of(self, dim: str) -> Range | None:
        """The bounds of the named dim ``dim``: its range, else 1..512 (None: unbounded batch)."""
        if dim in self.ranges:
            return self.ranges[dim]
        return None if dim == BATCH else DEFAULT_RANGE

    def with_batch(self, batch: int) -> TensorSpec:
        """Return this spec with dimension 0 set to ``batch``."""
        if not self.shape:
            return self
        return self._with_dim0(batch)

    def dynamic_batch(self) -> TensorSpec:
        """Return this spec with dimension 0 named ``batch`` (dynamic)."""
        if not self.shape:
            return self
        return self._with_dim0(BATCH)

    def _with_dim0(self, dim: Dim) -> TensorSpec:
        shape = (dim, *self.shape[1:])
        used = {d for d in shape if isinstance(d, str)}
        return dataclasses.replace(self, shape=shape,
                                   ranges={k: v for k, v in self.ranges.items() if k in used})

    def check(self, array: np.ndarray) -> None:
        """Raise BadRequestError when ``array`` does not fit this spec (dtype, shape, ranges)."""
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
        for i, (d, a) in enumerate(zip(self.shape, array.shape)):
            bounds = self.range_of(d) if isinstance(d, str) else None
            if bounds is not None and not bounds[0] <= a <= bounds[1]:
                raise BadRequestError(
                    f"input {self.name!r}: dimension {i} ({d}) is {a}, "
                    f"outside {bounds[0]}..{bounds[1]}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (dynamic dims as -1 or their name; ranges when given)."""
        out: dict[str, Any] = {"name": self.name,
                               "shape": [-1 if d is None else d for d in self.shape],
                               "dtype": self.dtype}
        if self.ranges:
            out["ranges"] = {k: list(v) for k, v in sorted(self.ranges.items())}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        shape = tuple(None if d == -1 else d for d in data["shape"])
        ranges = {str(k): (int(v[0]), int(v[1])) for k, v in dict(data.get("ranges") or {}).items()}
        return cls(name=data["name"], shape=shape, dtype=data.get("dtype", "float32"),
                   ranges=ranges)


def _check_range(dim: str, lo: int, hi: int, where: str) -> None:
    if lo < 1 or hi < lo:
        raise ConfigError(f"{where}: bad range {lo}..{hi} for dimension {dim!r}; "
                          "expected 1 <= lo <= hi")


_RANGE_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<lo>\d+)\.\.(?P<hi>\d+)$")


def parse_dim(token: Any, *, where: str) -> tuple[Dim, Range | None]:
    """One dimension: a positive size, ``-1`` (dynamic), ``NAME`` or ``NAME=LO..HI`` (named).

    Returns the dim and its range (None when not given). A named dim without a range spans
    ``DEFAULT_RANGE`` (1..512) wherever it is checked.
    """
    if isinstance(token, str):
        text = token.strip()
        m = _RANGE_RE.match(text)
        if m:
            lo, hi = int(m["lo"]), int(m["hi"])
            _check_range(m["name"], lo, hi, where)
            return m["name"], (lo, hi)
        if text.isidentifier():
            return text, None
        token = text
    if isinstance(token, bool):
        raise ConfigError(f"{where}: bad dimension {token!r}")
    try:
        n = int(token)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: bad dimension {token!r}; expected a size, -1, a name or "
                          "NAME=LO..HI") from exc
    if isinstance(token, float) and token != n:
        raise ConfigError(f"{where}: bad dimension {token!r}")
    if n == 0 or n < -1:
        raise ConfigError(f"{where}: dimension {n}; use a positive size, -1 or a name for a "
                          "dynamic one")
    return (None if n == -1 else n), None


def parse_shape(value: Any, *, where: str) -> tuple[tuple[Dim, ...], dict[str, Range]]:
    """A shape from ``1x3x224x224``/``-1,seq=1..512`` text or a list of dims; with its ranges.

    In text, dims are separated by ``x`` (or ``,``), so a name in text cannot contain an ``x``;
    the list form takes any identifier. ``""`` and ``scalar`` are the scalar shape.
    """
    if isinstance(value, str):
        text = value.strip()
        value = [] if text in ("", "scalar") else re.split(r"[x,]", text)
        if any(not v.strip() for v in value):
            raise ConfigError(f"{where}: bad shape {text!r}")
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ConfigError(f"{where}: shape must be a list of dimensions, got {value!r}")
    dims: list[Dim] = []
    ranges: dict[str, Range] = {}
    for token in value:
        dim, bounds = parse_dim(token, where=where)
        if bounds is not None and isinstance(dim, str):
            if ranges.get(dim, bounds) != bounds:
                raise ConfigError(f"{where}: dimension {dim!r} has two ranges")
            ranges[dim] = bounds
        dims.append(dim)
    return tuple(dims), ranges


def format_shape(shape: Sequence[Dim]) -> str:
    """Format a shape as ``1x3x224x224`` (dynamic dims as their name or -1)."""
    return "x".join("-1" if d is None else str(d) for d in shape) or "scalar"


_SPEC_RE = re.compile(r"^(?P<name>[^:]+):(?P<shape>[^:]*)(?::(?P<dtype>[A-Za-z0-9_]+))?$")


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``NAME:SHAPE[:DTYPE]`` such as ``x:1x3x224x224:float32`` or ``ids:-1xseq=1..512:int64``.

    A dim is a size, ``-1`` or a name (dynamic), or ``NAME=LO..HI`` (dynamic, bounded); a named
    dim without a range spans 1..512.
    """
    m = _SPEC_RE.match(text.strip())
    if not m:
        raise ConfigError(f"bad input spec {text!r}; expected NAME:SHAPE[:DTYPE], e.g. x:1x3x224x224")
    dims, ranges = parse_shape(m["shape"], where=f"input spec {text!r}")
    return TensorSpec(name=m["name"], shape=dims, dtype=m["dtype"] or "float32", ranges=ranges)


def random_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch: int | None = None,
    like: Mapping[str, np.ndarray] | None = None,
    seed: int | None = None,
    dims: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Make fresh random (never all-zero) inputs that fit ``specs``.

    Dim 0 is ``batch`` when given. A named dim takes its size from ``dims`` when named there,
    else from ``like`` (the user's example inputs), else 8 clamped into its range; inputs that
    share a dim name get one size. Anonymous dynamic dims take the example's size, else 1 for
    dim 0 and 8 for others. Integer inputs are drawn from the range the example inputs span (so
    token ids stay inside the vocabulary), or from [1, 10) without examples. An integer input
    whose example rows are ones then zeros (an attention mask over padding) gets rows of the
    same form with random lengths, so random inputs look like padded sequences.
    """
    rng = np.random.default_rng(seed)
    like = like or {}
    sizes = _dim_sizes(specs, batch=batch, like=like, dims=dims or {})
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        example = like.get(spec.name)
        shape: list[int] = []
        for i, d in enumerate(spec.shape):
            if i == 0 and batch is not None:
                shape.append(batch)
            elif isinstance(d, int) and d >= 0:
                shape.append(d)
            elif isinstance(d, str):
                shape.append(sizes[d])
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


def _dim_sizes(specs: Sequence[TensorSpec], *, batch: int | None,
               like: Mapping[str, np.ndarray], dims: Mapping[str, int]) -> dict[str, int]:
    """One size per dim name: from ``dims``, else the examples, else 8 (1 for dim 0) in range."""
    sizes = {k: int(v) for k, v in dims.items()}
    named = [(spec, i, d) for spec in specs for i, d in enumerate(spec.shape)
             if isinstance(d, str) and not (i == 0 and batch is not None)]
    for spec, i, d in named:
        example = like.get(spec.name)
        if d not in sizes and example is not None and i < example.ndim:
            sizes[d] = int(example.shape[i])
    bounds: dict[str, Range] = {}
    for spec, _, d in named:
        if d in spec.ranges:
            bounds.setdefault(d, spec.ranges[d])
    for spec, i, d in named:
        if d not in sizes:
            lo, hi = bounds.get(d) or spec.range_of(d) or (1, 1 << 30)
            sizes[d] = min(max(1 if i == 0 else 8, lo), hi)
    return sizes


def _is_padding_mask(example: np.ndarray | None) -> bool:
    """True when ``example`` holds 0/1 rows that are all ones then zeros (and not all ones)."""
    if example is None or example.ndim < 2 or example.dtype.kind not in "iub" or not example.size:
        return False
    if not np.isin(example, (0, 1)).all():
        return False
    rows = example.reshape(-1, example.shape[-1]).astype(np.int8)
    return bool(np.all(np.diff(rows, axis=1) <= 0) and rows[:, 0].all() and not rows.all())
