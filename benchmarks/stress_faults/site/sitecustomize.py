"""Fault injection for ``benchmarks/stress.py``, loaded by ``site`` in a server process.

The harness puts this directory on the server's ``PYTHONPATH`` and names a trigger file in
``YS_STRESS_FAULT_FILE``. Nothing happens unless that variable is set. When a compiled backend's
module ``yellowstone.backends.<name>`` is imported (``native`` excepted), the ``run`` method of
each of its compiled-model classes (``CompiledModel.run``: what a ``BoostedModel`` calls in
TorchServe and KServe) is wrapped; when ``yellowstone.plugins.tfserving.native`` is imported,
``ShimModel.run`` (the TF Serving shim's C call) is. While the trigger file exists, a wrapped
call does what it says:

    raise              raise RuntimeError (a compiled call that fails)
    hang SECONDS       sleep up to SECONDS, returning as soon as the file is gone, then run

No file: the call runs untouched (one ``stat`` per call). The source tree is never edited.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
import time

_ENV = "YS_STRESS_FAULT_FILE"


def _fault(path: str) -> None:
    """Apply what the trigger file says, if it exists."""
    try:
        with open(path, encoding="utf-8") as fh:
            words = fh.read().split()
    except OSError:
        return
    if not words:
        return
    if words[0] == "raise":
        raise RuntimeError("injected fault: compiled call raised (yellowstone stress harness)")
    if words[0] == "hang":
        limit = float(words[1]) if len(words) > 1 else 40.0
        end = time.monotonic() + limit
        while time.monotonic() < end and os.path.exists(path):
            time.sleep(0.05)


def _wrap(fn, path: str):
    @functools.wraps(fn)
    def faulty(*args, **kwargs):
        _fault(path)
        return fn(*args, **kwargs)

    faulty.__ys_stress_wrapped__ = True
    return faulty


def _patch_classes(module, path: str) -> list[str]:
    """Wrap ``run`` of every class defined in ``module`` that defines one (not the Backend)."""
    done = []
    for name, cls in list(vars(module).items()):
        if (isinstance(cls, type) and cls.__module__ == module.__name__
                and not name.endswith("Backend") and callable(cls.__dict__.get("run"))
                and not getattr(cls.__dict__["run"], "__ys_stress_wrapped__", False)):
            cls.run = _wrap(cls.__dict__["run"], path)
            done.append(name)
    return done


BACKENDS = "yellowstone.backends."
NOT_COMPILED = {"yellowstone.backends.native", "yellowstone.backends.base"}
SHIM = "yellowstone.plugins.tfserving.native"


def _wanted(fullname: str) -> bool:
    return fullname == SHIM or (fullname.startswith(BACKENDS) and fullname not in NOT_COMPILED
                                and fullname.count(".") == 2)


class _PatchingLoader(importlib.abc.Loader):
    """Run the real loader, then patch the module it made."""

    def __init__(self, real, path: str):
        self._real, self._path = real, path

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        self._real.exec_module(module)
        try:
            done = _patch_classes(module, self._path)
            if done:
                print(f"[stress] fault hook armed on {module.__name__}.{'/'.join(done)}.run "
                      f"(pid {os.getpid()})", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - never break the server it rides in
            print(f"[stress] fault hook failed on {module.__name__}: {exc!r}", file=sys.stderr,
                  flush=True)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Find the patched modules with the other finders; wrap their loaders."""

    def __init__(self, path: str):
        self._path = path

    def find_spec(self, fullname, target_path=None, target=None):
        if not _wanted(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, target_path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self._path)
                return spec
        return None


def _install() -> None:
    path = os.environ.get(_ENV)
    if not path:
        return
    for name, module in list(sys.modules.items()):  # imported already (unlikely this early)
        if _wanted(name):
            _patch_classes(module, path)
    sys.meta_path.insert(0, _PostImportFinder(path))


_install()
