"""The interposer's process-wide state: one lock, the active settings, the patches, a re-entry guard."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

from .settings import InterposeSettings

lock = threading.RLock()
_tls = threading.local()


class Patch(NamedTuple):
    """One replaced attribute: ``owner.attr`` held ``original`` (found as ``module.attr``)."""

    owner: Any
    attr: str
    original: Any
    module: str


@dataclasses.dataclass
class Active:
    """What is installed now; ``settings`` is None while the interposer is off."""

    settings: InterposeSettings | None = None
    patched: dict[tuple[int, str], Patch] = dataclasses.field(default_factory=dict)
    finder: Any = None


ACTIVE = Active()


@contextlib.contextmanager
def inside() -> Iterator[None]:
    """Calls to patched loaders from here (the core, a loader itself) go to the originals."""
    depth = getattr(_tls, "depth", 0)
    _tls.depth = depth + 1
    try:
        yield
    finally:
        _tls.depth = depth


def is_inside() -> bool:
    """True within :func:`inside` on this thread."""
    return getattr(_tls, "depth", 0) > 0


def current_settings() -> InterposeSettings:
    """The active settings, or the defaults when the interposer is not installed."""
    return ACTIVE.settings or InterposeSettings()
