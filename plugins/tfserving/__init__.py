"""Yellowstone for TF Serving: a drop-in ``tensorflow_model_server`` with a C shim under boosted signatures.

Parts: ``csrc/`` (the C shim, its CPython binding and the TF C API interposer, built by setup.py),
:mod:`.native` (loading them), :mod:`.artifacts` (boosting a signature into a shim artifact),
:mod:`.servable` / :mod:`.manager` (versions and signatures), :mod:`.grpc_api` / :mod:`.rest_api`
(TF Serving's two APIs) and :mod:`.server` (flags and ``main``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server (``yellowstone tfserving``); see :mod:`.server`."""
    from .server import main as _main

    return _main(argv)
