"""Server-side batching (``--enable_batching``): concurrent runs merged into one call, split back."""

from __future__ import annotations

from .options import QueueOptions, SchedulerOptions, options_from_proto, read_parameters
from .scheduler import QUEUE_FULL, BatchQueue, BatchScheduler
from .servable import ServableBatching
from .tasks import BatchStats, PaddedDim, batch_key, merge_inputs, split_outputs, task_size

__all__ = [
    "QUEUE_FULL", "BatchQueue", "BatchScheduler", "BatchStats", "PaddedDim", "QueueOptions",
    "SchedulerOptions", "ServableBatching", "batch_key", "merge_inputs", "options_from_proto",
    "read_parameters", "split_outputs", "task_size",
]
