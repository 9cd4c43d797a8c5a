"""TF Serving's gRPC API: PredictionService (Predict, Classify, Regress, metadata) and ModelService."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from .codec import to_ndarray, to_tensor_proto
from .errors import ServingError, from_exception
from .manager import ModelManager

logger = logging.getLogger(__name__)

STATE_CODES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure is a status, never a crash
            err = from_exception(exc)
            if err.code == "INTERNAL":
                logger.exception("%s failed", fn.__name__)
            context.abort(getattr(grpc.StatusCode, err.code), err.message)

    wrapper.__name__ = fn.__name__
    return wrapper


def _lookup(manager: ModelManager, spec: Any) -> Any:
    version = spec.version.value if spec.HasField("version") else None
    return manager.get(spec.name, version, spec.version_label or None)


def _fill_spec(out: Any, servable: Any, signature: str) -> None:
    out.name = servable.name
    out.version.value = servable.version
    out.signature_name = signature


def serialized_examples(inp: Any) -> list[bytes]:
    """tf.Example bytes from an Input proto (context features merged into each example)."""
    which = inp.WhichOneof("kind")
    if which == "example_list":
        return [e.SerializeToString() for e in inp.example_list.examples]
    if which == "example_list_with_context":
        ctx = inp.example_list_with_context.context
        out = []
        for e in inp.example_list_with_context.examples:
            merged = type(e)()
            merged.CopyFrom(ctx)
            merged.MergeFrom(e)
            out.append(merged.SerializeToString())
        return out
    raise ServingError("INVALID_ARGUMENT", "Input is empty")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService over the model manager."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_guard
    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        servable = _lookup(self.manager, request.model_spec)
        key = request.model_spec.signature_name or "serving_default"
        feeds = {k: to_ndarray(v) for k, v in request.inputs.items()}
        outputs = servable.predict(key, feeds, request.output_filter)
        resp = predict_pb2.PredictResponse()
        _fill_spec(resp.model_spec, servable, key)
        for name, arr in outputs.items():
            to_tensor_proto(arr, resp.outputs[name])
        return resp

    @_guard
    def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        fields = list(request.metadata_field)
        bad = [f for f in fields if f != "signature_def"]
        if not fields or bad:
            raise ServingError("INVALID_ARGUMENT", f"Metadata field {(bad or [''])[0]} is not supported")
        servable = _lookup(self.manager, request.model_spec)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(resp.model_spec, servable, "")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(v)
        resp.metadata["signature_def"].Pack(sig_map)
        return resp

    @_guard
    def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        servable = _lookup(self.manager, request.model_spec)
        key = request.model_spec.signature_name or "serving_default"
        classes, scores = servable.classify(key, serialized_examples(request.input))
        resp = classification_pb2.ClassificationResponse()
        _fill_spec(resp.model_spec, servable, key)
        n = len(classes if classes is not None else scores)
        for i in range(n):
            row = resp.result.classifications.add()
            k = (classes if classes is not None else scores).shape[1]
            for j in range(k):
                c = row.classes.add()
                if classes is not None:
                    c.label = (
                        classes[i, j].decode() if isinstance(classes[i, j], bytes) else str(classes[i, j])
                    )
                if scores is not None:
                    c.score = float(scores[i, j])
        return resp

    @_guard
    def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        servable = _lookup(self.manager, request.model_spec)
        key = request.model_spec.signature_name or "serving_default"
        values = servable.regress(key, serialized_examples(request.input))
        resp = regression_pb2.RegressionResponse()
        _fill_spec(resp.model_spec, servable, key)
        for v in values:
            resp.result.regressions.add().value = float(v)
        return resp


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus (HandleReloadConfigRequest is not offered)."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_guard
    def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        resp = get_model_status_pb2.GetModelStatusResponse()
        for v, state, error in self.manager.status(spec.name, version):
            st = resp.model_version_status.add()
            st.version = v
            st.state = STATE_CODES[state]
            st.status.error_code = 2 if error else 0  # UNKNOWN / OK
            st.status.error_message = error
        return resp


def make_server(manager: ModelManager, host: str, port: int, workers: int = 16) -> tuple[grpc.Server, int]:
    """A started gRPC server bound to ``host:port``; returns it and the bound port."""
    from concurrent import futures

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ys-grpc"),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
