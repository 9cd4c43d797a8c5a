"""Backend registry: a cheap table of names; each backend module is imported on first use.

Built-in backends are listed in ``_BUILTIN``; third-party packages add their own through the
``yellowstone.backends`` entry-point group (``name = "package.module:BackendClass"``), under a
name of their own: one that reuses a built-in name is a configuration error. Every backend is
checked against the :class:`~yellowstone.backends.base.Backend` protocol when first made.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import logging

from ..errors import ConfigError
from .base import Availability, Backend, CompiledModel, CompileRequest, missing_members

logger = logging.getLogger(__name__)

__all__ = ["Availability", "Backend", "CompileRequest", "CompiledModel", "get_backend",
           "backend_names", "probe_all", "register_backend", "unregister_backend",
           "module_available", "distribution_version"]

# name -> "module:Class". Order is the default order of candidates.
_BUILTIN: dict[str, str] = {
    "native": "yellowstone.backends.native:NativeBackend",
    "onnxruntime": "yellowstone.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "yellowstone.backends.openvino:OpenVinoBackend",
    "tvm": "yellowstone.backends.tvm:TvmBackend",
    "inductor": "yellowstone.backends.inductor:InductorBackend",
    "tensorrt": "yellowstone.backends.tensorrt:TensorRtBackend",
}
_EXTRA: dict[str, str] = {}
_INSTANCES: dict[str, Backend] = {}


def register_backend(name: str, target: str | Backend) -> None:
    """Register a backend by ``"module:Class"`` path or instance (tests inject fakes this way)."""
    if isinstance(target, str):
        _EXTRA[name] = target
        _INSTANCES.pop(name, None)
    else:
        _check_protocol(name, f"<instance {type(target).__name__}>", target)
        _EXTRA[name] = f"<instance {type(target).__name__}>"
        _INSTANCES[name] = target


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend`."""
    _EXTRA.pop(name, None)
    _INSTANCES.pop(name, None)


@functools.cache
def _entry_points() -> dict[str, str]:
    """The ``yellowstone.backends`` entry points installed: name -> ``"module:Class"``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group="yellowstone.backends")}


def _plugins() -> dict[str, str]:
    """The entry-point backends; a ConfigError when one reuses a built-in backend's name."""
    found = _entry_points()
    clashes = [f"entry point {name!r} = {target!r} (group yellowstone.backends) reuses the name of "
               f"the built-in backend {name!r} ({_BUILTIN[name]}); rename the entry point"
               for name, target in found.items() if name in _BUILTIN]
    if clashes:
        raise ConfigError("; ".join(clashes))
    return found


def backend_names() -> list[str]:
    """All known backend names: built-in first, then entry points, then registered ones."""
    names = list(_BUILTIN)
    for extra in (_plugins(), _EXTRA):
        names += [n for n in extra if n not in names]
    return names


def get_backend(name: str) -> Backend:
    """Return the backend instance for ``name``, importing its module on first use."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    target = _EXTRA.get(name) or _plugins().get(name) or _BUILTIN.get(name)
    if target is None:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(backend_names())}")
    module_name, _, cls_name = target.partition(":")
    backend = getattr(importlib.import_module(module_name), cls_name)()
    _check_protocol(name, target, backend)
    _INSTANCES[name] = backend
    return backend


def _check_protocol(name: str, target: str, backend: object) -> None:
    missing = missing_members(backend)
    if missing:
        raise ConfigError(f"backend {name!r} ({target}) does not implement the Backend protocol: "
                          f"it lacks {', '.join(missing)}")


def probe_all() -> list[Availability]:
    """Probe every known backend (each probe is cached by the backend)."""
    result = []
    for name in backend_names():
        try:
            result.append(get_backend(name).probe())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break doctor
            result.append(Availability(name=name, available=False,
                                       reason=f"{type(exc).__name__}: {exc}"))
    return result


@functools.cache
def module_available(module: str) -> bool:
    """True when ``module`` can be imported (checked by spec, without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def distribution_version(*dists: str) -> str | None:
    """Version of the first installed distribution among ``dists`` (e.g. onnxruntime-gpu)."""
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
