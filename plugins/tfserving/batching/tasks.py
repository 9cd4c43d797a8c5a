"""Batch tasks: one run waiting for its batch, and merging tasks' inputs / splitting the outputs back."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ServingError
from .options import QueueOptions

Feeds = Mapping[str, np.ndarray]
Runner = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """What one processed batch looked like (for the batching metrics)."""

    thread_pool_name: str
    queue_name: str
    labels: Mapping[str, str]
    task_sizes: tuple[int, ...]
    queued_us: tuple[float, ...]
    processed_size: int
    padding: int


class Task:
    """One run (or a split piece of one) waiting for its batch."""

    __slots__ = ("feeds", "size", "enqueued", "_done", "result", "error")

    def __init__(self, feeds: dict[str, np.ndarray], size: int):
        self.feeds, self.size = feeds, size
        self.enqueued = time.monotonic()
        self._done = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None

    def finish(self, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self._done.set()

    def wait(self) -> dict[str, np.ndarray]:
        self._done.wait()
        if self.error is not None:
            raise _copy_error(self.error)
        assert self.result is not None
        return self.result


def _copy_error(exc: BaseException) -> BaseException:
    """One exception object per waiting thread (each raise grows its own traceback)."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is raised as is
        return exc


def task_size(feeds: Feeds) -> int:
    """The dim-0 size all inputs share; TF Serving's INVALID_ARGUMENT otherwise."""
    if not feeds:
        raise ServingError("INVALID_ARGUMENT", "Batching session Run() must have at least one input tensor")
    sizes = set()
    for arr in feeds.values():
        if np.ndim(arr) == 0:
            raise ServingError(
                "INVALID_ARGUMENT", "Batching session Run() input tensors must have at least one dimension"
            )
        sizes.add(np.shape(arr)[0])
    if len(sizes) != 1:
        raise ServingError(
            "INVALID_ARGUMENT", "Batching session Run() input tensors must have equal 0th-dimension size"
        )
    return int(sizes.pop())


# ----------------------------------------------------------------------------- merge / split
@dataclasses.dataclass(frozen=True)
class PaddedDim:
    """An input dim (beyond 0) that padding evened out: the batch's size and each task's own."""

    name: str
    axis: int
    size: int
    task_sizes: tuple[int, ...]


def batch_key(feeds: Feeds, padding: bool) -> tuple[Any, ...]:
    """What tasks sharing a batch must agree on: dtypes and ranks, and with no padding every dim past 0."""
    return tuple(
        (name, arr.dtype.str, arr.ndim if padding else tuple(arr.shape[1:]))
        for name, arr in sorted(feeds.items())
    )


def _pad_to(arr: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """Pad dims 1.. of ``arr`` up to ``dims`` with zeros (empty strings for string tensors)."""
    if tuple(arr.shape[1:]) == tuple(dims[1:]):
        return arr
    if not 1 <= arr.ndim <= 6:
        raise ServingError("INVALID_ARGUMENT", "Only tensors with rank from 1 to 6 can be padded.")
    if arr.size < 1:
        raise ServingError("INVALID_ARGUMENT", "Got empty tensor in batch of non-empty tensors.")
    widths = [(0, 0)] + [(0, int(d) - s) for d, s in zip(dims[1:], arr.shape[1:])]
    fill = b"" if arr.dtype.kind in "OS" else "" if arr.dtype.kind == "U" else 0
    return np.pad(arr, widths, mode="constant", constant_values=fill)


def merge_inputs(
    tasks: Sequence[Task], options: QueueOptions
) -> tuple[dict[str, np.ndarray], int, list[PaddedDim]]:
    """Concatenate the tasks' inputs along dim 0: the inputs, the padding rows added, the padded dims."""
    total = sum(t.size for t in tasks)
    padding = options.round_up(total) - total
    merged: dict[str, np.ndarray] = {}
    padded: list[PaddedDim] = []
    for name in tasks[0].feeds:
        parts = [np.asarray(t.feeds[name]) for t in tasks]
        if any(p.ndim != parts[0].ndim or p.shape[1:] != parts[0].shape[1:] for p in parts):
            if not options.pad_variable_length_inputs:
                raise ServingError(
                    "FAILED_PRECONDITION",
                    f"Tensors with name '{name}' from different tasks have different shapes and padding "
                    "is turned off.Set pad_variable_length_inputs to true, or ensure that all tensors "
                    "with the same namehave equal dimensions starting with the first dim.",
                )
            dims = [max(p.shape[i] for p in parts) for i in range(parts[0].ndim)]
            padded += [PaddedDim(name, i, dims[i], tuple(p.shape[i] for p in parts))
                       for i in range(1, len(dims)) if any(p.shape[i] != dims[i] for p in parts)]
            parts = [_pad_to(p, dims) for p in parts]
        if padding:
            parts.append(np.repeat(parts[-1][:1], padding, axis=0))
        merged[name] = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return merged, padding, padded


def _slice_axes(name: str, arr: np.ndarray, padded: Sequence[PaddedDim],
                declared: Mapping[str, Sequence[int] | None]) -> list[tuple[int, tuple[int, ...]]]:
    """The output's axes padding stretched, each with every task's own size there.

    An axis beyond 0 counts when it is dynamic where the output's shape is declared and its size
    is a padded dim's; when padded dims of that size disagree, only one at the same axis counts.
    """
    shape = declared.get(name)
    out = []
    for axis in range(1, arr.ndim):
        if shape is not None and (axis >= len(shape) or shape[axis] >= 0):
            continue
        found = {p.task_sizes for p in padded if p.size == arr.shape[axis]}
        if len(found) > 1:
            found = {p.task_sizes for p in padded if p.size == arr.shape[axis] and p.axis == axis}
        if len(found) == 1:
            out.append((axis, found.pop()))
    return out


def split_outputs(
    outputs: Mapping[str, np.ndarray], sizes: Sequence[int], padding: int,
    padded: Sequence[PaddedDim] = (), declared: Mapping[str, Sequence[int] | None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Cut each batched output back into one piece per task: padding rows dropped, padded dims sliced back.

    ``declared``: each output's declared shape (-1: dynamic; None or absent: unknown).
    """
    total = sum(sizes) + padding
    bounds = np.cumsum(sizes)[:-1]
    per_task: list[dict[str, np.ndarray]] = [{} for _ in sizes]
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        if arr.ndim == 0:
            raise ServingError("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
        if arr.shape[0] != total:
            raise ServingError(
                "FAILED_PRECONDITION",
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                "sizes of the input tensors",
            )
        axes = _slice_axes(name, arr, padded, declared or {}) if padded else []
        for i, piece in enumerate(np.split(arr[: sum(sizes)], bounds, axis=0)):
            for axis, task_sizes in axes:
                piece = np.take(piece, range(task_sizes[i]), axis=axis)
            per_task[i][name] = piece
    return per_task
