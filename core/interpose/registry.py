"""The registry of proxied models: live ones by weak reference, released ones as small snapshots.

A proxy's state (and the boosted model it holds) is dropped as soon as the application lets the
proxy go; what the report needs of it is kept as a plain dict, the last ``KEEP_RELEASED`` only.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .boostable import Boostable

KEEP_RELEASED = 64


class Registry:
    """Every proxied model's state, in the order the models were loaded."""

    def __init__(self, keep_released: int = KEEP_RELEASED):
        self._lock = threading.RLock()  # a finalizer may run on a thread that holds it
        self._serial = itertools.count()
        self._entries: dict[int, Boostable | dict[str, Any]] = {}
        self._released: collections.deque[int] = collections.deque()
        self._keep = keep_released

    def add(self, proxy: object, state: Boostable) -> None:
        """Track ``state`` while ``proxy`` lives; keep only its snapshot once it is collected."""
        serial = next(self._serial)
        with self._lock:
            self._prune()
            self._entries[serial] = state
        fin = weakref.finalize(proxy, self._release, serial)
        fin.atexit = False  # nothing to release at interpreter exit

    def discard(self, state: Boostable) -> None:
        """Stop reporting ``state`` (a proxy whose boosts are reported by another one)."""
        with self._lock:
            for serial, entry in list(self._entries.items()):
                if entry is state:
                    del self._entries[serial]

    def live(self) -> list[Boostable]:
        """The states of proxies the application still holds."""
        with self._lock:
            return [e for e in list(self._entries.values()) if not isinstance(e, dict)]

    def snapshot(self) -> list[dict[str, Any]]:
        """Every model's report entry: live ones now, released ones as they were when let go."""
        with self._lock:
            entries = list(self._entries.values())
        return [e if isinstance(e, dict) else e.to_dict() for e in entries]

    def _release(self, serial: int) -> None:
        # Runs from the garbage collector: replace the value (no resize), never prune here.
        entry = self._entries.get(serial)
        if entry is not None and not isinstance(entry, dict):
            self._entries[serial] = {**entry.to_dict(), "released": True}
            self._released.append(serial)

    def _prune(self) -> None:
        while len(self._released) > self._keep:
            self._entries.pop(self._released.popleft(), None)


REGISTRY = Registry()
