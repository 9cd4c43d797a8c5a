"""Length buckets: one static build per size of a dynamic dim, for backends that need static shapes.

A model with a dynamic sequence length (``seq``) can still be served by a backend that compiles
static shapes only: build it at a few lengths (the *buckets*), pad each request up to the
nearest one and cut the outputs back. Padding is only correct when the model is told to ignore
the padded positions, so a dim is bucketed only when one of the inputs that carry it is a
padding mask (0/1 rows, ones then zeros, or 0/1 values in an input named a mask:
``attention_mask``); every input along that dim is
padded with zeros, so the mask says "padding" there. Validation then checks the bucketed model
against the framework at lengths across the range, so a model that does not honour its mask is
rejected there rather than trusted here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..spec import _is_padding_mask
from .base import CompiledModel

if TYPE_CHECKING:
    from ..model import ModelHandle

SMALLEST = 8  # below this a bucket saves little: a length of 1 pads to 8
PLAN = "lengths.json"


def bucketed_dim(model: ModelHandle) -> tuple[str | None, str]:
    """The one dim to bucket (its name), or None and why it cannot be (no reason: no such dim)."""
    dims = list(getattr(model, "dim_ranges", {}))
    for dim in dims:
        carriers = carriers_of(model, dim)
        if not any(_is_mask(name, model.example_feeds.get(name)) for name in carriers):
            return None, (f"dynamic dim {dim} carries no padding mask among its inputs "
                          f"({', '.join(carriers)}), so padding it could change the outputs")
    if len(dims) > 1:
        return None, (f"dynamic non-batch dims {', '.join(dims)}: one build per size is done "
                      "for a single dim only")
    return (dims[0] if dims else None), ""


def _is_mask(name: str, example: np.ndarray | None) -> bool:
    """A padding mask: its example reads as one, or it holds 0/1 and is named a mask.

    One unpadded sentence's ``attention_mask`` is all ones, so its values alone do not tell.
    """
    if _is_padding_mask(example):
        return True
    return (example is not None and example.dtype.kind in "iub" and "mask" in name.lower()
            and bool(np.isin(example, (0, 1)).all()))


def bucket_sizes(lo: int, hi: int) -> list[int]:
    """Powers of two from ``SMALLEST`` (or ``lo``) up to ``hi``, and ``hi`` itself.

    At least two sizes, so that the outputs that follow the length show (:func:`output_axes`).
    """
    sizes = [size for size in (SMALLEST << k for k in range(32)) if lo <= size < hi]
    return (sizes or [lo]) + [hi]


def pad_feeds(model_inputs: Mapping[str, int], feeds: Mapping[str, np.ndarray],
              size: int) -> dict[str, np.ndarray]:
    """``feeds`` with every input in ``model_inputs`` (name -> axis) zero-padded to ``size``."""
    out = dict(feeds)
    for name, axis in model_inputs.items():
        arr = feeds[name]
        extra = size - arr.shape[axis]
        if extra > 0:
            widths = [(0, 0)] * arr.ndim
            widths[axis] = (0, extra)
            out[name] = np.pad(arr, widths)
    return out


class LengthBuckets:
    """Static builds at several lengths of one dim, serving any length up to the largest."""

    def __init__(self, builds: Mapping[int, CompiledModel], carriers: Mapping[str, int],
                 out_axes: Sequence[Sequence[int]]):
        self._builds = dict(sorted(builds.items()))
        self._carriers = dict(carriers)  # input name -> axis of the dim
        self._out_axes = [list(a) for a in out_axes]  # per output: axes that carry the dim

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Pad up to the nearest bucket, run it, cut the outputs back to the request's length."""
        name, axis = next(iter(self._carriers.items()))
        n = int(feeds[name].shape[axis])
        size = next((s for s in self._builds if s >= n), None)
        if size is None:  # check_feeds refuses these first; kept as a clear error here
            raise ValueError(f"length {n} is beyond the largest bucket {max(self._builds)}")
        outs = self._builds[size].run(pad_feeds(self._carriers, feeds, size))
        if size == n:
            return outs
        return [_cut(o, axes, n) for o, axes in zip(outs, self._out_axes, strict=True)]


def _cut(out: np.ndarray, axes: Sequence[int], n: int) -> np.ndarray:
    index = [slice(None)] * out.ndim
    for a in axes:
        index[a] = slice(0, n)
    return np.ascontiguousarray(out[tuple(index)])


def carriers_of(model: ModelHandle, dim: str) -> dict[str, int]:
    """Input name -> the axis where it carries ``dim``."""
    return {s.name: s.shape.index(dim) for s in model.inputs if dim in s.shape}


def output_axes(builds: Mapping[int, CompiledModel], model: ModelHandle, dim: str,
                batch: int | None) -> list[list[int]]:
    """Per output, the axes that follow the bucket's length.

    The two smallest builds run once on random inputs; the output sizes that change follow it.
    """
    small = sorted(builds)[:2]
    shapes = []
    for size in small:
        feeds = model.random_feeds(batch=batch or 1, seed=size, dims={dim: size})
        shapes.append([o.shape for o in builds[size].run(feeds)])
    return [[a for a in range(len(s0)) if s0[a] != s1[a]] for s0, s1 in zip(*shapes)]


def write_plan(workdir: Path, dim: str, sizes: Sequence[int], out_axes: Sequence[Sequence[int]],
               p50_ms: Mapping[int, float]) -> None:
    """Record the buckets (and each one's measured p50) beside the builds."""
    (workdir / PLAN).write_text(json.dumps({
        "dim": dim, "sizes": list(sizes), "output_axes": [list(a) for a in out_axes],
        "p50_ms": {str(k): round(v, 4) for k, v in p50_ms.items()}}, indent=1))


def read_plan(workdir: Path) -> dict | None:
    """The recorded plan, None for a build without length buckets."""
    path = workdir / PLAN
    return json.loads(path.read_text()) if path.exists() else None


def load_buckets(model: ModelHandle, plan: Mapping, load_one: Callable[[int], CompiledModel]
                 ) -> LengthBuckets:
    """The :class:`LengthBuckets` a plan describes, each build loaded by ``load_one(size)``."""
    dim = plan["dim"]
    return LengthBuckets({int(s): load_one(int(s)) for s in plan["sizes"]},
                         carriers_of(model, dim), plan["output_axes"])
