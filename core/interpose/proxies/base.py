"""The proxy base: forwards every attribute to the original and holds the one fallback path.

A boosted call goes through :meth:`Proxy._ys_serve`: a call outside the boosted model's input
contract (a shape it was not compiled for) or a failure of the compiled path is served by the
original through :meth:`Proxy._ys_fallback`, logged and counted; an error that is the client's
(a 4xx by ``yellowstone.serving.status_of``: ``BadRequestError``, ``ConfigError``) raised while
the boosted model runs propagates unchanged, so the application maps it as every server does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ...serving.status import status_of
from ..boostable import Boostable
from ..registry import REGISTRY
from ..state import current_settings

Feeds = Mapping[str, Any]


class Proxy:
    """Forwards every attribute to the original; methods returning the original return the proxy.

    ``isinstance(proxy, type(original))`` holds (``__class__`` answers the original's class);
    ``__wrapped__`` is the original object.
    """

    _ys_mutators: frozenset[str] = frozenset()

    def __init__(self, original: Any, *, api: str, source: str, register: bool = True):
        object.__setattr__(self, "_ys_original", original)
        object.__setattr__(self, "_ys", Boostable(api, source))
        if register:
            REGISTRY.add(self, self._ys)

    # -- identity ------------------------------------------------------------------------
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(object.__getattribute__(self, "_ys_original"))

    @property
    def __wrapped__(self) -> Any:
        return self._ys_original

    @property
    def yellowstone_report(self) -> Any:
        """The core Report of the boosted model (None until the first eligible call)."""
        b = self._ys.boosted
        return b.report if b is not None else None

    @property
    def yellowstone_state(self) -> dict[str, Any]:
        """Boost state, reason and call counters (also in the ``--report`` file)."""
        return self._ys.to_dict()

    # -- forwarding ------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_ys"):  # not set yet (copy, unpickling): never recurse
            raise AttributeError(name)
        value = getattr(self._ys_original, name)
        if callable(value) and getattr(value, "__self__", None) is self._ys_original:
            return self._ys_method(name, value)
        return value

    def _ys_method(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self._ys_mutators:
                self._ys.reset(f".{name}() was called")
            result = method(*args, **kwargs)
            return self if result is self._ys_original else result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ys_original, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._ys_original, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._ys_original)) | {"yellowstone_report", "yellowstone_state"})

    def __repr__(self) -> str:
        return repr(self._ys_original)

    def __str__(self) -> str:
        return str(self._ys_original)

    def __len__(self) -> int:
        return len(self._ys_original)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ys_original)

    def __getitem__(self, key: Any) -> Any:
        return self._ys_original[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._ys_original

    def __bool__(self) -> bool:
        return bool(self._ys_original)

    # -- boosting and serving --------------------------------------------------------------
    def _ys_config(self, batch: int | None) -> Any:
        return current_settings().boost_config(batch)

    def _ys_original_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._ys.count("original")
        return fn(*args, **kwargs)

    def _ys_fallback(self, reason: str, exc: BaseException, fn: Callable[..., Any],
                     args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """The one path by which a call the boosted model does not serve reaches the original."""
        self._ys.fallback(reason, exc)
        return self._ys_original_call(fn, *args, **kwargs)

    def _ys_serve(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
                  *, boosted: Any, feeds: Callable[[], Feeds], run: Callable[[Feeds], Any]) -> Any:
        """Serve ``fn(*args, **kwargs)`` as ``run(feeds())`` on ``boosted``.

        ``feeds`` maps the call to the boosted model's named inputs; ``run`` runs them and
        returns what ``fn`` would.
        """
        try:
            named = feeds()
            boosted.handle.check_feeds(named)
        except Exception as exc:  # noqa: BLE001 - outside the compiled contract: the original
            return self._ys_fallback("rejected", exc, fn, args, kwargs)
        try:
            out = run(named)
        except Exception as exc:  # noqa: BLE001 - the compiled path failed: the original serves
            if status_of(exc).client_fault:
                raise  # the client's error: same class, same http_status / grpc_code
            return self._ys_fallback("runtime", exc, fn, args, kwargs)
        self._ys.count("boosted")
        return out

    def _ys_call_boosted(self, boosted: Any, fn: Callable[..., Any], args: Sequence[Any],
                         kwargs: Mapping[str, Any]) -> Any:
        """Serve a call made as the original is called (framework tensors in and out)."""
        handle = boosted.handle
        return self._ys_serve(
            fn, args, kwargs, boosted=boosted,
            feeds=lambda: handle.feeds_from_call(args, kwargs),
            run=lambda named: handle.wrap_outputs(boosted.run(named), args, kwargs))


def batch_of(values: Sequence[Any]) -> int | None:
    """Dimension 0 of the first array-like value, or None."""
    shapes = [tuple(v.shape) for v in values if getattr(v, "shape", None) is not None]
    return int(shapes[0][0]) if shapes and shapes[0] else None


def source_of(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """What a loader was given, for logs and reports: a path, or the argument's type."""
    first = args[0] if args else next(iter(kwargs.values()), None)
    if isinstance(first, (str, os.PathLike)):
        return os.fspath(first)
    return type(first).__name__ if first is not None else "?"
