"""Proxies for ``tf.saved_model.load``: the loaded object, its signatures, each one boosted."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from .base import Proxy, batch_of


class SavedModelProxy(Proxy):
    """What ``tf.saved_model.load`` returned; ``.signatures[key](**tensors)`` is boosted."""

    def __init__(self, original: Any, *, api: str, source: str, path: Any):
        # the signatures carry the boosts and are reported, not the loaded object
        super().__init__(original, api=api, source=source, register=False)
        object.__setattr__(self, "_ys_path", path)
        object.__setattr__(self, "_ys_signatures", None)

    @property
    def signatures(self) -> Any:
        """The signature map, each function boosted on its first call."""
        if self._ys_signatures is None:
            object.__setattr__(self, "_ys_signatures", SignatureMap(
                self._ys_original.signatures, api=self._ys.api, source=self._ys.source,
                path=self._ys_path))
        return self._ys_signatures

    @property
    def yellowstone_report(self) -> Any:
        """The report of the ``serving_default`` signature (or the first boosted one)."""
        sigs = self._ys_signatures
        if sigs is None:
            return None
        fns = sorted(sigs.made.items(), key=lambda kv: kv[0] != "serving_default")
        return next((f.yellowstone_report for _, f in fns if f.yellowstone_report), None)


class SignatureMap(Mapping):  # type: ignore[type-arg]
    """The loaded object's ``signatures``, each function handed out as a :class:`SignatureProxy`."""

    def __init__(self, original: Any, *, api: str, source: str, path: Any):
        self._original = original
        self._api, self._source, self._path = api, source, path
        self.made: dict[str, SignatureProxy] = {}

    def __getitem__(self, key: str) -> Any:
        fn = self._original[key]
        if key not in self.made:
            self.made[key] = SignatureProxy(fn, api=self._api, source=f"{self._source}[{key}]",
                                            path=self._path, key=key)
        return self.made[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._original)

    def __len__(self) -> int:
        return len(self._original)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class SignatureProxy(Proxy):
    """One SavedModel signature function: keyword tensor calls run on the boosted model."""

    def __init__(self, original: Any, *, api: str, source: str, path: Any, key: str):
        super().__init__(original, api=api, source=source)
        object.__setattr__(self, "_ys_path", path)
        object.__setattr__(self, "_ys_key", key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._ys_original
        ok = (not args and kwargs and self._ys_path is not None and all(
            hasattr(v, "shape") and hasattr(v, "dtype") for v in kwargs.values()))
        boosted = self._ys.get(lambda: self._ys_boost(kwargs)) if ok else None
        if boosted is None:
            return self._ys_original_call(fn, *args, **kwargs)
        return self._ys_call_boosted(boosted, fn, args, kwargs)

    def _ys_boost(self, example: Mapping[str, Any]) -> Any:
        from ... import engine
        from ...model import load_model

        handle = load_model(os.fspath(self._ys_path), dict(example), signature=self._ys_key)
        return engine.boost(handle, config=self._ys_config(batch_of(list(example.values()))))
