"""Yellowstone for KServe: a boost predictor, its runtime image and its Kubernetes manifests.

- ``BoostModel`` (``model.py``): a ``kserve.Model`` that boosts the model KServe's storage
  initializer put in ``/mnt/models`` and serves V1 and V2 over REST and gRPC.
- ``python -m yellowstone.plugins.kserve``: the predictor's entry point, with KServe's flags
  and the serving layer's boost flags (``yellowstone.serving``).
- ``codec.py`` (V1/V2 <-> numpy), ``errors.py`` (any error -> the serving layer's HTTP status
  and gRPC code), ``metrics.py`` (``yellowstone_*`` series on KServe's ``/metrics``).
- ``routes.py``: the predictor's REST routes ahead of KServe's, which decode V2 bodies with
  ``v2rest.py`` (NumPy, binary tensor extension included) instead of KServe's per-element
  decoder.
- ``manifests.py``: ClusterServingRuntime, InferenceService and NFD NodeFeatureRule per
  accelerator (``yellowstone kserve manifests``); ``Dockerfile``: the runtime image.

Importing this package does not import kserve; ``BoostModel`` loads it on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BoostModel", "build_manifests", "manifests_main"]


def __getattr__(name: str) -> Any:
    if name == "BoostModel":
        from .model import BoostModel

        return BoostModel
    if name in ("build_manifests", "manifests_main"):
        from . import manifests

        return getattr(manifests, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
