"""The shared batch scheduler (SharedBatchScheduler) and its per-signature queues of batches."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ServingError
from .options import QueueOptions, SchedulerOptions
from .tasks import BatchStats, Feeds, Runner, Task, batch_key, merge_inputs, split_outputs, task_size

logger = logging.getLogger(__name__)

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class _Batch:
    __slots__ = ("tasks", "size", "opened", "key")

    def __init__(self, key: tuple[Any, ...], opened: float) -> None:
        self.tasks: list[Task] = []
        self.size = 0
        self.opened = opened
        self.key = key


class BatchQueue:
    """One signature's queue of batches in a :class:`BatchScheduler`; ``run`` is its entry point.

    A run is a task; tasks join the open batch while it has room (``max_batch_size``) and their
    inputs fit it (:func:`.tasks.batch_key`); a batch is processed once it is full, once a newer
    batch is behind it, or once its first task has waited ``batch_timeout_micros``, on the first
    free thread. A queue holding ``max_enqueued_batches`` batches refuses new tasks (UNAVAILABLE,
    TF Serving's words). Tasks whose inputs differ beyond dim 0 share a batch only with
    ``pad_variable_length_inputs`` (zeros up to the batch's longest, each output sliced back to
    the task's own lengths); without it they go to separate batches. ``allowed_batch_sizes`` pads
    the batch with copies of its last task's first row; ``enable_large_batch_splitting`` splits a
    task over batches of ``max_execution_batch_size``.

    ``output_shapes``: each output's declared shape (-1 dynamic), so only dynamic output dims are
    sliced back after padding; an output not named there may be sliced at any dim past 0.
    """

    def __init__(
        self,
        scheduler: BatchScheduler,
        options: QueueOptions,
        runner: Runner,
        name: str,
        labels: Mapping[str, str] | None = None,
        output_shapes: Mapping[str, Sequence[int] | None] | None = None,
    ):
        self.options, self.name = options, name
        self.labels = dict(labels or {})
        self.output_shapes = dict(output_shapes or {})
        self._scheduler = scheduler
        self._runner = runner
        self._batches: collections.deque[_Batch] = collections.deque()
        self.closed = False

    # -- client side ------------------------------------------------------------------------
    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run ``feeds`` as part of a batch; blocks until its batch has run."""
        size = task_size(feeds)
        opts = self.options
        if size > opts.max_batch_size:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Task size {size} is larger than maximum input batch size {opts.max_batch_size}",
            )
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        if size == 0 or self.closed:  # nothing to batch, or a straggler of an unloaded version
            return dict(self._runner(feeds))
        pieces = self._enqueue(feeds, size)
        results = [p.wait() for p in pieces]
        if len(results) == 1:
            return results[0]
        return {k: np.concatenate([r[k] for r in results], axis=0) for k in results[0]}

    def _enqueue(self, feeds: dict[str, np.ndarray], size: int) -> list[Task]:
        """Put the task (or its pieces) into the open batch where it fits, else into new ones."""
        opts, limit = self.options, self.options.execution_limit
        key = batch_key(feeds, opts.pad_variable_length_inputs)
        pieces: list[Task] = []
        with self._scheduler.cond:
            fits = bool(self._batches) and self._batches[-1].key == key
            room = limit - self._batches[-1].size if fits else 0
            if size <= limit and size > room:
                room = 0  # a whole task starts a new batch rather than straddling two
            sizes = _piece_sizes(size, room, limit) if opts.enable_large_batch_splitting else [size]
            new_batches = len(sizes) - (1 if sizes[0] <= room else 0)
            if len(self._batches) + new_batches > opts.max_enqueued_batches:
                raise ServingError("UNAVAILABLE", QUEUE_FULL)
            start = 0
            for n in sizes:
                part = {k: v[start : start + n] for k, v in feeds.items()} if len(sizes) > 1 else feeds
                piece = Task(part, n)
                start += n
                last = self._batches[-1] if self._batches else None
                if last is None or last.key != key or last.size + n > limit:
                    last = _Batch(key, piece.enqueued)
                    self._batches.append(last)
                last.tasks.append(piece)
                last.size += n
                pieces.append(piece)
            self._scheduler.cond.notify()
        return pieces

    # -- scheduler side (called with the scheduler's lock held) -----------------------------
    def take_ready(self, now: float) -> tuple[_Batch | None, float | None]:
        """The head batch if it may run now, else None and the seconds until it may."""
        if not self._batches:
            return None, None
        head = self._batches[0]
        timeout = self.options.batch_timeout_micros / 1e6
        if (
            head.size >= self.options.execution_limit
            or len(self._batches) > 1
            or now - head.opened >= timeout
        ):
            return self._batches.popleft(), None
        return None, head.opened + timeout - now

    def idle(self) -> bool:
        return not self._batches

    def process(self, batch: _Batch) -> BatchStats:
        """Merge, run once, split back; every task of the batch gets the result or the error."""
        now = time.monotonic()
        tasks = batch.tasks
        padding = 0
        try:
            merged, padding, padded = merge_inputs(tasks, self.options)
            outputs = self._runner(merged)
            pieces = split_outputs(outputs, [t.size for t in tasks], padding, padded, self.output_shapes)
            for task, out in zip(tasks, pieces):
                task.finish(result=out)
        except BaseException as exc:  # noqa: BLE001 - the error belongs to the waiting callers
            for task in tasks:
                task.finish(error=exc)
        return BatchStats(
            thread_pool_name=self._scheduler.options.thread_pool_name,
            queue_name=self.name,
            labels=self.labels,
            task_sizes=tuple(t.size for t in tasks),
            queued_us=tuple((now - t.enqueued) * 1e6 for t in tasks),
            processed_size=batch.size + padding,
            padding=padding,
        )


def _piece_sizes(size: int, room: int, limit: int) -> list[int]:
    """Split ``size`` rows into the open batch's ``room`` first, then batches of ``limit``."""
    out = []
    if room > 0:
        out.append(min(room, size))
        size -= out[0]
    while size > 0:
        out.append(min(limit, size))
        size -= out[-1]
    return out


class BatchScheduler:
    """Shared batch threads over any number of queues (TF Serving's SharedBatchScheduler).

    Args:
        options: thread count and pool name.
        on_batch: called with a :class:`BatchStats` after each batch (metrics); never raises.
    """

    def __init__(self, options: SchedulerOptions, on_batch: Callable[[BatchStats], None] | None = None):
        self.options = options
        self.cond = threading.Condition()
        self._queues: list[BatchQueue] = []
        self._next = 0
        self._stopped = False
        self._on_batch = on_batch
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def add_queue(
        self, options: QueueOptions, runner: Runner, name: str = "", labels: Mapping[str, str] | None = None,
        output_shapes: Mapping[str, Sequence[int] | None] | None = None,
    ) -> BatchQueue:
        """A new queue whose batches run ``runner`` (merged feeds -> batched outputs)."""
        q = BatchQueue(self, options, runner, name, labels, output_shapes)
        with self.cond:
            self._queues.append(q)
        return q

    def remove_queue(self, queue: BatchQueue) -> None:
        """Stop scheduling on ``queue`` once the batches already in it have run."""
        with self.cond:
            queue.closed = True
            if queue.idle() and queue in self._queues:
                self._queues.remove(queue)

    def stop(self) -> None:
        """Let the threads end once idle (the server is shutting down)."""
        with self.cond:
            self._stopped = True
            self.cond.notify_all()

    def _next_ready(self) -> tuple[BatchQueue, _Batch] | None:
        """Round-robin over queues for a batch that may run; waits on the condition otherwise."""
        while True:
            if self._stopped:
                return None
            now = time.monotonic()
            wait: float | None = None
            n = len(self._queues)
            for i in range(n):
                q = self._queues[(self._next + i) % n]
                batch, until = q.take_ready(now)
                if batch is not None:
                    self._next = (self._next + i + 1) % max(n, 1)
                    if q.closed and q.idle():
                        self._queues.remove(q)
                    if not q.idle():
                        self.cond.notify()  # more work left for another thread
                    return q, batch
                if until is not None:
                    wait = until if wait is None else min(wait, until)
            self.cond.wait(timeout=wait)

    def _work(self) -> None:
        while True:
            with self.cond:
                found = self._next_ready()
            if found is None:
                return
            queue, batch = found
            stats = queue.process(batch)
            if self._on_batch is not None:
                try:
                    self._on_batch(stats)
                except Exception:  # noqa: BLE001 - metrics must never break serving
                    logger.debug("batch metrics failed", exc_info=True)
