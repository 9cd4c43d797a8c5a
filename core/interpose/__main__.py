"""``python -m yellowstone.interpose ...``: the same command as ``yellowstone run ...``."""

from .cli import main

raise SystemExit(main())
