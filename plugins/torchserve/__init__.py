"""Yellowstone for TorchServe: a boost handler that accelerates existing handlers, and archiving.

- ``boost_handler.py``: pass it to ``torch-model-archiver --handler``; the ``yellowstone:``
  section of model-config.yaml names the handler it boosts and the boost options.
- ``archive.archive_main``: ``yellowstone archive``, the same in one step, optionally
  precompiled for the target hardware so workers load instead of compiling.
"""

from pathlib import Path

BOOST_HANDLER_FILE = Path(__file__).with_name("boost_handler.py")

__all__ = ["BOOST_HANDLER_FILE"]
