"""The proxy for a loaded Keras model: ``predict``, ``predict_on_batch`` and ``__call__`` boosted."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .base import Feeds, Proxy, batch_of

MUTATORS = frozenset({"fit", "train_on_batch", "set_weights", "load_weights"})


class KerasProxy(Proxy):
    """A loaded Keras model: ``predict``, ``predict_on_batch`` and ``__call__`` are boosted.

    Inputs are numpy arrays or tensors (a list of them for multi-input models), cast to the
    model's input dtypes as Keras does; ``training=True``, masks, datasets, generators,
    callbacks and dict outputs go to the original model.
    """

    _ys_mutators = MUTATORS

    def _ys_feeds(self, x: Any) -> list[Any] | None:
        """``x`` as one array per model input, cast as Keras would; None when not boostable."""
        import numpy as np

        km = self._ys_original
        try:
            inputs = list(km.inputs)
            if isinstance(km.output, Mapping):
                return None
        except Exception:  # noqa: BLE001 - unbuilt/subclassed models: not boosted
            return None
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(inputs):
            return None
        feeds = []
        for value, t in zip(xs, inputs):
            if not (isinstance(value, np.ndarray) or type(value).__module__.startswith("tensorflow")
                    and hasattr(value, "numpy")):
                return None
            arr = np.asarray(value)
            want = np.dtype(getattr(t.dtype, "name", t.dtype))
            if arr.dtype != want:
                if arr.dtype.kind != want.kind or arr.dtype.kind not in "fiu":
                    return None
                arr = arr.astype(want)
            feeds.append(arr)
        return feeds

    def _ys_boosted(self, feeds: list[Any]) -> Any:
        from ... import engine

        return self._ys.get(lambda: engine.boost(self._ys_original, tuple(feeds),
                                                 config=self._ys_config(batch_of(feeds))))

    def _ys_on_boosted(self, x: Any, sample: Callable[[list[Any]], list[Any]],
                       run: Callable[[Any, Feeds], Any], fn: Callable[..., Any],
                       args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Serve ``fn(*args, **kwargs)`` as ``run(boosted, feeds of x)``, else the original.

        ``sample`` picks the example the first call boosts on from the feeds.
        """
        feeds = self._ys_feeds(x)
        boosted = self._ys_boosted(sample(feeds)) if feeds is not None else None
        if feeds is None or boosted is None:
            return self._ys_original_call(fn, *args, **kwargs)
        return self._ys_serve(
            fn, args, kwargs, boosted=boosted,
            feeds=lambda: {s.name: a for s, a in zip(boosted.inputs, feeds)},
            run=lambda named: run(boosted, named))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        km = self._ys_original
        extra = {k: v for k, v in kwargs.items() if not (k == "training" and not v)}
        if len(args) != 1 or extra:
            return self._ys_original_call(km, *args, **kwargs)

        def run(boosted: Any, named: Feeds) -> Any:
            import tensorflow as tf

            tensors = [tf.constant(o) for o in boosted.run(named)]
            return tensors[0] if len(tensors) == 1 else tensors

        return self._ys_on_boosted(args[0], _whole, run, km, args, kwargs)

    def predict(self, x: Any = None, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None, **kwargs: Any) -> Any:
        """Keras ``predict``; arrays are run on the boosted model in ``batch_size`` chunks."""
        km = self._ys_original
        call = dict(batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks,
                    **kwargs)
        if steps is not None or callbacks is not None or kwargs:
            return self._ys_original_call(km.predict, x, **call)
        size = int(batch_size or 32)
        return self._ys_on_boosted(x, lambda feeds: [f[:size] for f in feeds],
                                   lambda boosted, named: _run_chunked(boosted, named, size),
                                   km.predict, (x,), call)

    def predict_on_batch(self, x: Any) -> Any:
        """Keras ``predict_on_batch`` on the boosted model."""
        def run(boosted: Any, named: Feeds) -> Any:
            outs = boosted.run(named)
            return outs[0] if len(outs) == 1 else outs

        return self._ys_on_boosted(x, _whole, run, self._ys_original.predict_on_batch, (x,), {})


def _whole(feeds: list[Any]) -> list[Any]:
    return feeds


def _run_chunked(boosted: Any, named: Feeds, size: int) -> Any:
    """Run ``named`` in chunks of ``size`` rows; outputs concatenated as ``predict`` returns them."""
    import numpy as np

    n = int(next(iter(named.values())).shape[0])
    parts = [boosted.run({k: v[i:i + size] for k, v in named.items()}) for i in range(0, n, size)]
    outs = [np.concatenate(o) for o in zip(*parts)]
    return outs[0] if len(outs) == 1 else outs
