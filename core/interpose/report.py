"""The ``--report`` file: every proxied model's state, backend, call counts and core report, as JSON."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .registry import REGISTRY
from .state import ACTIVE, lock

logger = logging.getLogger(__name__)


def patched_functions() -> dict[str, Any]:
    """``{"module.attr": original function}`` for every attribute replaced now."""
    with lock:
        return {f"{p.module}.{p.attr}": p.original for p in ACTIVE.patched.values()}


def reports() -> list[dict[str, Any]]:
    """Every proxied model's state, backend, call counts and core report."""
    return REGISTRY.snapshot()


def write_report(path: str | os.PathLike[str]) -> None:
    """Write ``{"pid", "interposed", "models"}`` as JSON to ``path`` (atomically)."""
    data = {"pid": os.getpid(), "interposed": sorted(patched_functions()), "models": reports()}
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, p)
    except OSError as exc:
        logger.warning("yellowstone: cannot write the report to %s: %s", p, exc)
