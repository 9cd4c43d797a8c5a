"""Yellowstone: boost a model with the fastest validated compiler, transparently.

    import yellowstone
    boosted = yellowstone.boost(model, example_inputs)
    y = boosted(x)
    print(boosted.report)

Importing this package is cheap: frameworks and compilers load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["boost", "compile", "BoostedModel", "BoostConfig", "Report", "TensorSpec",
           "doctor", "load_model", "errors", "metrics", "__version__"]

if TYPE_CHECKING:
    from .config import BoostConfig
    from .engine import BoostedModel, boost
    from .model import load_model
    from .report import Report
    from .spec import TensorSpec

_LAZY = {
    "boost": ("engine", "boost"), "BoostedModel": ("engine", "BoostedModel"),
    "BoostConfig": ("config", "BoostConfig"), "Report": ("report", "Report"),
    "TensorSpec": ("spec", "TensorSpec"), "load_model": ("model", "load_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    if name in ("errors", "metrics"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'yellowstone' has no attribute {name!r}")


def compile(model: Any, example_inputs: Any = None, *, out: str | None = None, **kwargs: Any) -> Any:  # noqa: A001
    """Boost ``model`` and, with ``out``, write the portable artifact directory there."""
    from .engine import boost as _boost

    boosted = _boost(model, example_inputs, **kwargs)
    if out:
        boosted.save(out)
    return boosted


def doctor() -> dict[str, Any]:
    """Hardware and backend availability, as ``yellowstone doctor --json`` prints it."""
    from .backends import probe_all
    from .hardware import detect

    return {"hardware": detect().to_dict(), "backends": [a.to_dict() for a in probe_all()]}
