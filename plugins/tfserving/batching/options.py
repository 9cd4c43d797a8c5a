"""Batching parameters: BatchingParameters (``--batching_parameters_file``) as queue and scheduler options."""

from __future__ import annotations

import dataclasses
from typing import Any

from yellowstone.serving import host_cores

from ..textproto import StartupError


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueOptions:
    """One queue's parameters (BatchingParameters' queue and session fields; TF's defaults)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size

    def __post_init__(self) -> None:
        if self.max_batch_size <= 0:
            raise StartupError(
                "INVALID_ARGUMENT", f"max_batch_size must be positive; was {self.max_batch_size}"
            )
        if self.batch_timeout_micros < 0:
            raise StartupError(
                "INVALID_ARGUMENT",
                f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}",
            )
        if self.max_enqueued_batches <= 0:
            raise StartupError(
                "INVALID_ARGUMENT", f"max_enqueued_batches must be positive; was {self.max_enqueued_batches}"
            )
        if self.max_execution_batch_size < 0 or (
            self.enable_large_batch_splitting and self.max_execution_batch_size > self.max_batch_size
        ):
            raise StartupError(
                "INVALID_ARGUMENT",
                f"max_execution_batch_size must be positive and at most max_batch_size; "
                f"was {self.max_execution_batch_size}",
            )
        sizes = self.allowed_batch_sizes
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise StartupError(
                "INVALID_ARGUMENT", "allowed_batch_sizes entries must be monotonically increasing"
            )
        if sizes and sizes[-1] != self.execution_limit:
            which = "max_execution_batch_size" if self.enable_large_batch_splitting else "max_batch_size"
            raise StartupError(
                "INVALID_ARGUMENT",
                f"Last entry in allowed_batch_sizes must match {which}; last entry was {sizes[-1]}; "
                f"expected {self.execution_limit}",
            )

    @property
    def execution_limit(self) -> int:
        """The largest batch the model is run on."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    def round_up(self, size: int) -> int:
        """The smallest allowed batch size >= ``size`` (``size`` when none is configured)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size


@dataclasses.dataclass(frozen=True, kw_only=True)
class SchedulerOptions:
    """The shared scheduler's parameters: its threads and their pool's name."""

    num_batch_threads: int = dataclasses.field(default_factory=host_cores)
    thread_pool_name: str = "batch_threads"

    def __post_init__(self) -> None:
        if self.num_batch_threads <= 0:
            raise StartupError(
                "INVALID_ARGUMENT", f"num_batch_threads must be positive; was {self.num_batch_threads}"
            )


def options_from_proto(params: Any) -> tuple[SchedulerOptions, QueueOptions]:
    """SchedulerOptions and QueueOptions from a BatchingParameters message (unset -> default)."""

    def wrapped(name: str) -> Any:
        return getattr(params, name).value if params.HasField(name) else None

    sched: dict[str, Any] = {}
    if (n := wrapped("num_batch_threads")) is not None:
        sched["num_batch_threads"] = int(n)
    if (n := wrapped("thread_pool_name")) is not None:
        sched["thread_pool_name"] = n
    queue: dict[str, Any] = {}
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "max_execution_batch_size",
    ):
        if (v := wrapped(name)) is not None:
            queue[name] = int(v)
    if (v := wrapped("enable_large_batch_splitting")) is not None:
        queue["enable_large_batch_splitting"] = bool(v)
    queue["allowed_batch_sizes"] = tuple(int(s) for s in params.allowed_batch_sizes)
    queue["pad_variable_length_inputs"] = bool(params.pad_variable_length_inputs)
    return SchedulerOptions(**sched), QueueOptions(**queue)


def read_parameters(path: str | None) -> tuple[SchedulerOptions, QueueOptions]:
    """``--batching_parameters_file`` (None: TF Serving's defaults, pool ``model_server_batch_threads``)."""
    from ..textproto import message_class, parse_text_file

    if not path:
        return SchedulerOptions(thread_pool_name="model_server_batch_threads"), QueueOptions()
    return options_from_proto(parse_text_file(path, message_class("BatchingParameters")()))
