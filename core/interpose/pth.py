"""The ``.pth`` start-up hook: write or remove the line that interposes opted-in processes."""

from __future__ import annotations

import os
from pathlib import Path

PTH_NAME = "yellowstone-interpose.pth"
PTH_LINE = ("import os; os.environ.get('YELLOWSTONE_INTERPOSE', '').strip() == '1' "
            "and __import__('yellowstone.interpose_hook')\n")


def site_packages() -> Path:
    """This interpreter's (the venv's) site-packages directory."""
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def install_hook(site_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``yellowstone-interpose.pth``; it acts only where ``YELLOWSTONE_INTERPOSE=1``."""
    path = Path(site_dir or site_packages()) / PTH_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PTH_LINE)
    return path


def uninstall_hook(site_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Remove the ``.pth`` file; return its path, or None when it was not there."""
    path = Path(site_dir or site_packages()) / PTH_NAME
    if not path.exists():
        return None
    path.unlink()
    return path
