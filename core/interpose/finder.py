"""A ``sys.meta_path`` finder that runs a callback right after a watched module first executes."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Collection
from typing import Any


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of watched modules to call ``after`` on exec."""

    def __init__(self, names: Collection[str], after: Callable[[], None]):
        self.names = set(names)
        self._after = after
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = self._real_spec(fullname, path, target)
        finally:
            self._busy.discard(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = PatchingLoader(spec.loader, self._after)
        return spec

    def _real_spec(self, fullname: str, path: Any, target: Any) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


class PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then ``after`` (which patches whatever the new module provides)."""

    def __init__(self, loader: Any, after: Callable[[], None]):
        self._loader = loader
        self._after = after

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self._loader  # the module sees its real loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._after()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
