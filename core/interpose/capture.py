"""Holds back the core's WARNINGs while one thread boosts, so they can be re-logged as detail."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_tls = threading.local()


class _Capture(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        held = getattr(_tls, "held", None)
        if held is not None and record.levelno >= logging.WARNING:
            held.append(record)
            return False
        return True


_CAPTURE = _Capture()


def _attach() -> None:
    """Filter every core logger (``yellowstone.*`` outside the interposer) that exists now."""
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if (name.startswith("yellowstone.") and not name.startswith("yellowstone.interpose")
                and isinstance(lg, logging.Logger) and _CAPTURE not in lg.filters):
            lg.addFilter(_CAPTURE)


@contextlib.contextmanager
def held_warnings() -> Iterator[list[logging.LogRecord]]:
    """Within the block, this thread's core WARNINGs are appended to the yielded list instead."""
    _attach()
    held: list[logging.LogRecord] = []
    previous = getattr(_tls, "held", None)
    _tls.held = held
    try:
        yield held
    finally:
        _tls.held = previous
