"""Proxies for what interposed loaders return, one module per framework, and the dispatch to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..apis import Api
from .base import Proxy, source_of
from .keras import KerasProxy
from .tf import SavedModelProxy, SignatureProxy
from .torch import ExportedProgramProxy, TorchModuleProxy, wrap_torch

__all__ = ["Proxy", "TorchModuleProxy", "ExportedProgramProxy", "KerasProxy", "SavedModelProxy",
           "SignatureProxy", "wrap"]


def wrap(api: Api, obj: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """The proxy for what ``api``'s loader returned when called with ``args``/``kwargs``."""
    source = source_of(args, kwargs)
    if api.kind == "keras":
        return KerasProxy(obj, api=api.name, source=source)
    if api.kind == "saved_model":
        path = args[0] if args else kwargs.get("export_dir")
        return SavedModelProxy(obj, api=api.name, source=source, path=path)
    return wrap_torch(api.kind, obj, api=api.name, source=source)
