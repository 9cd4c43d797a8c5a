"""``python -m yellowstone``: the same command as ``yellowstone``."""

from .cli import main

raise SystemExit(main())
