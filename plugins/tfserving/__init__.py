"""Yellowstone for TF Serving: a drop-in ``tensorflow_model_server``, a C shim under the signatures it wins.

Modules: :mod:`.server` (``main``, the lifecycle) and :mod:`.flags` (every TF Serving flag);
:mod:`.listeners`, :mod:`.grpc_api` and :mod:`.rest` (the two APIs); :mod:`.codec` (TensorProto
and REST JSON); :mod:`.manager` (models, versions, labels); :mod:`.servable`, :mod:`.session` and
:mod:`.inference` (one loaded version: Predict, Classify, Regress, MultiInference);
:mod:`.artifacts` (which C path serves a signature, and its files); :mod:`.native` and ``csrc/``
(the C shim over OpenVINO and ONNX Runtime); :mod:`.batching`, :mod:`.warmup`,
:mod:`.monitoring`, :mod:`.tls`, :mod:`.textproto`.

Metrics: ``yellowstone_fallbacks_total{model, backend, reason}`` counts every time the shim does
not serve. ``reason="shim"`` (``backend="shim-<backend>"``): a C path failed its check against
TensorFlow (or to open) when a version loaded, so another path or TensorFlow serves the signature.
``reason="shape"``: a request does not fit the serving shim's artifact (a dtype, rank or static
dim it does not take, or a dynamic dim outside the range it was validated for) and TensorFlow
serves that request. ``reason="runtime"``: the shim failed on a request, TensorFlow answered it.
Per-request reasons carry the shim's actual backend (``openvino`` or ``onnxruntime``) and log one
WARNING per signature and reason. ``yellowstone_tfserving_batches_total`` counts batched runs.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server (``yellowstone tfserving``); see :mod:`.server`."""
    from .server import main as _main

    return _main(argv)
