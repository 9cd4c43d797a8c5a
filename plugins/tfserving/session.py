"""A SavedModel loaded as TF Serving's LoadSavedModel loads it, run by tensor names (Session::Run)."""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

_CALLABLES = 64  # cached Session callables (one per feed/fetch set) per session


class TensorFlowSession:
    """The ``serve`` MetaGraph in a ``tf.compat.v1.Session``; the graph, not the SignatureDef, judges feeds.

    Args:
        path: the version directory.
        tags: the MetaGraphDef's tags (``--saved_model_tags``).
        config: a ``tf.compat.v1.ConfigProto`` for the session.
    """

    def __init__(self, path: str | os.PathLike[str], tags: Sequence[str], config: Any = None):
        import tensorflow as tf
        from tensorflow.python.saved_model import loader_impl

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        try:
            with self.graph.as_default():
                self.meta_graph = loader_impl.SavedModelLoader(str(path)).load(self.session, list(tags))
        except BaseException:
            self.session.close()
            raise
        self._callables: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]) -> Any:
        from tensorflow.core.protobuf import config_pb2

        key = (feeds, fetches)
        with self._lock:
            fn = self._callables.get(key)
            if fn is not None:
                self._callables.move_to_end(key)
                return fn
        opts = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
        fn = self.session._make_callable_from_options(opts)
        with self._lock:
            self._callables[key] = fn
            while len(self._callables) > _CALLABLES:
                self._callables.popitem(last=False)
        return fn

    def run(self, feeds: Sequence[tuple[str, np.ndarray]], fetches: Sequence[str]) -> list[np.ndarray]:
        """Session::Run: feed tensors by name, fetch tensors by name (no shape checks of its own)."""
        fn = self._callable(tuple(n for n, _ in feeds), tuple(fetches))
        return list(fn(*[a for _, a in feeds]))

    def close(self) -> None:
        """Release the session."""
        with self._lock:
            self._callables.clear()
        self.session.close()


def default_session_config(threads: int = 0) -> Any:
    """The session's ConfigProto: ``threads`` intra-op threads when set (TF's defaults otherwise)."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    if threads > 0:
        config.intra_op_parallelism_threads = threads
    return config
