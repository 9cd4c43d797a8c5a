"""Interpreter-start hook: installs the interposer when ``YELLOWSTONE_INTERPOSE=1``, else nothing.

``yellowstone run --install-hook`` writes ``yellowstone-interpose.pth`` into site-packages; its
one line imports this module only when the variable is ``1``. Importing it otherwise costs one
``os.environ`` lookup and imports nothing else (no framework, not even the interposer).
"""

from __future__ import annotations

import os


def activate() -> bool:
    """Install the interposer if ``YELLOWSTONE_INTERPOSE=1``; return whether it is installed."""
    if os.environ.get("YELLOWSTONE_INTERPOSE", "").strip() != "1":
        return False
    try:
        from yellowstone.interpose import install_from_env

        return install_from_env()
    except Exception as exc:  # noqa: BLE001 - a broken hook must never stop the interpreter
        import logging

        logging.getLogger("yellowstone.interpose").warning(
            "yellowstone: interposer not installed (%s: %s); the program runs unchanged",
            type(exc).__name__, exc)
        return False


activate()
