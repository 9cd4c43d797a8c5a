"""A loaded servable's runs (shim and TensorFlow) put behind queues of the shared scheduler."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .options import QueueOptions
from .scheduler import BatchQueue, BatchScheduler
from .tasks import Feeds, Runner


class _BatchedShim:
    """A shim model whose ``run`` goes through a batch queue; ``close`` reaches the real one."""

    def __init__(self, shim: Any, queue: BatchQueue):
        self._shim, self._queue = shim, queue

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        return self._queue.run(feeds)

    def close(self) -> None:
        self._shim.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shim, name)


class ServableBatching:
    """Puts one loaded servable's runs (shim and TensorFlow) behind queues of a shared scheduler.

    ``install`` replaces each entry of ``servable.shims`` by a batched proxy and the instance's
    ``run_tensorflow`` by a batched call (one queue per signature and input set, made on first
    use), and wraps ``close`` to retire the queues, so Predict, Classify and Regress all batch
    as TF Serving's BatchingSession batches every Session::Run.
    """

    def __init__(self, scheduler: BatchScheduler, options: QueueOptions, servable: Any):
        self.scheduler, self.options, self.servable = scheduler, options, servable
        self._queues: dict[tuple[str, ...], BatchQueue] = {}
        self._lock = threading.Lock()
        self._tf_run = servable.run_tensorflow

    def _queue(self, key: str, runtime: str, runner: Runner) -> BatchQueue:
        s = self.servable
        labels = {"model": s.name, "version": str(s.version), "signature": key, "runtime": runtime}
        return self.scheduler.add_queue(self.options, runner, f"{s.name}/{s.version}/{key}/{runtime}", labels,
                                        self._output_shapes(key))

    def _output_shapes(self, key: str) -> dict[str, Sequence[int] | None]:
        """The signature's declared output shapes (what padding may be sliced back from)."""
        from ..artifacts import declared_shape

        sig = getattr(self.servable, "signature_defs", {}).get(key)
        return {alias: declared_shape(info) for alias, info in sig.outputs.items()} if sig is not None else {}

    def install(self) -> Any:
        """Put the servable's shims and TensorFlow runs behind the queues; returns the servable."""
        s = self.servable
        for key, shim in list(s.shims.items()):
            q = self._queue(key, "shim", shim.run)
            self._queues[("shim", key)] = q
            s.shims[key] = _BatchedShim(shim, q)
        s.run_tensorflow = self._run_tensorflow
        close = s.close

        def closing() -> None:
            for q in list(self._queues.values()):
                self.scheduler.remove_queue(q)
            close()

        s.close = closing
        return s

    def _run_tensorflow(self, key: str, feeds: Feeds) -> dict[str, np.ndarray]:
        ident = ("tf", key, *sorted(feeds))
        with self._lock:
            q = self._queues.get(ident)
            if q is None:
                q = self._queue(key, "tensorflow", lambda merged, k=key: self._tf_run(k, merged))
                self._queues[ident] = q
        return q.run(feeds)
