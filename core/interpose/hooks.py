"""Install and uninstall the interposer: replace the selected framework loaders, put them back.

Loaders of frameworks already imported are patched at install; the others right after the
application first imports them (:mod:`.finder`), so this never imports torch or TensorFlow.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .apis import Api
from .finder import PatchOnImport
from .proxies import wrap
from .report import write_report
from .settings import InterposeSettings, settings_from
from .state import ACTIVE, Patch, inside, is_inside, lock

logger = logging.getLogger(__name__)


def is_installed() -> bool:
    """True while the interposer is installed."""
    return ACTIVE.settings is not None


def install(settings: InterposeSettings | None = None) -> bool:
    """Install the interposer (idempotent); ``YELLOWSTONE_INTERPOSE=0`` makes this a no-op."""
    if os.environ.get("YELLOWSTONE_INTERPOSE", "").strip() == "0":
        logger.info("yellowstone: YELLOWSTONE_INTERPOSE=0: the interposer stays off")
        return False
    with lock:
        if ACTIVE.settings is not None:
            return True
        chosen = ACTIVE.settings = settings or settings_from()
        watched = {a.root for a in chosen.apis} | {m for a in chosen.apis for m, _ in a.targets}
        ACTIVE.finder = PatchOnImport(watched, patch_available)
        sys.meta_path.insert(0, ACTIVE.finder)
        patch_available()
    if chosen.report_path:
        atexit.register(write_report, chosen.report_path)
    return True


def install_from_env() -> bool:
    """Install with settings from ``YELLOWSTONE_*`` (the ``.pth`` hook's entry point)."""
    return install(settings_from())


def uninstall() -> None:
    """Put every original function back and stop patching on import.

    Proxies already handed to the application keep working (they stop boosting nothing).
    """
    with lock:
        for p in list(ACTIVE.patched.values()):
            if vars(p.owner).get(p.attr) is not p.original:
                setattr(p.owner, p.attr, p.original)
        ACTIVE.patched.clear()
        if ACTIVE.finder is not None and ACTIVE.finder in sys.meta_path:
            sys.meta_path.remove(ACTIVE.finder)
        ACTIVE.finder = None
        ACTIVE.settings = None


def patch_available() -> None:
    """Replace every selected loader whose module is imported now and not yet patched."""
    with lock:
        if ACTIVE.settings is None:
            return
        for api in ACTIVE.settings.apis:
            for module_name, attr in api.targets:
                owner = _resolve_owner(module_name)
                try:
                    current = vars(owner).get(attr) if owner is not None else None
                except TypeError:
                    continue
                if current is None or getattr(current, "__yellowstone_api__", None):
                    continue
                setattr(owner, attr, _make_wrapper(api, current))
                ACTIVE.patched[(id(owner), attr)] = Patch(owner, attr, current, module_name)
                logger.debug("yellowstone: interposed %s.%s", module_name, attr)


def _resolve_owner(module_name: str) -> Any:
    """The object holding a target attribute, if already imported; never imports anything."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    root, *rest = module_name.split(".")
    obj = sys.modules.get(root)
    for part in rest:  # e.g. tensorflow.saved_model lives as tensorflow._api.v2.saved_model
        if obj is None:
            return None
        try:
            obj = vars(obj).get(part)
        except TypeError:
            return None
    return obj


def _make_wrapper(api: Api, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def loader(*args: Any, **kwargs: Any) -> Any:
        if is_inside() or ACTIVE.settings is None:
            return original(*args, **kwargs)
        with inside():
            obj = original(*args, **kwargs)
        try:
            return wrap(api, obj, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - never break the application's load
            logger.warning("yellowstone: %s model not boosted (%s: %s); the original serves",
                           api.name, type(exc).__name__, exc)
            return obj

    loader.__yellowstone_api__ = api.name  # type: ignore[attr-defined]
    return loader
