"""TF Serving's gRPC API: PredictionService (all five methods), ModelService."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from .codec import to_tensor_proto
from .errors import ServingError, from_exception
from .inference import CLASSIFY, DEFAULT_SIGNATURE

logger = logging.getLogger(__name__)

STATE_CODES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
SIGNATURE_DEF = "signature_def"


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure is a status, never a crash
            err = from_exception(exc)
            if err.http_status >= 500 and not isinstance(exc, ServingError):
                logger.exception("%s failed", fn.__name__)
            else:
                logger.debug("%s: %s %s", fn.__name__, err.code, err.message)
            context.abort(getattr(grpc.StatusCode, err.code), err.message)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _empty_spec() -> Any:
    from tensorflow_serving.apis import model_pb2

    return model_pb2.ModelSpec()


def lookup(manager: Any, spec: Any) -> Any:
    """The servable a ModelSpec names (by version, label or latest)."""
    version = spec.version.value if spec.HasField("version") else None
    return manager.get(spec.name, version, spec.version_label or None)


def make_model_spec(out: Any, name: str, signature: str | None, version: int | None) -> Any:
    """MakeModelSpec: the name, the signature (empty -> serving_default) when given, the version."""
    out.Clear()
    out.name = name
    if signature is not None:
        out.signature_name = signature or DEFAULT_SIGNATURE
    if version is not None:
        out.version.value = version
    return out


def fill_classifications(result: Any, classes: Any, scores: Any) -> Any:
    """A ClassificationResult from validated classes/scores ([n, k] each, or None)."""
    ref = classes if classes is not None else scores
    for i in range(ref.shape[0]):
        row = result.classifications.add()
        for j in range(ref.shape[1]):
            c = row.classes.add()
            if classes is not None:
                label = classes[i, j]
                c.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                c.score = float(scores[i, j])
    return result


def fill_regressions(result: Any, values: Any) -> Any:
    """A RegressionResult from one float per example."""
    for v in values.tolist():
        result.regressions.add().value = v
    return result


def metadata_response(manager: Any, request: Any) -> Any:
    """GetModelMetadataImpl::GetModelMetadata."""
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
    if not request.metadata_field:
        raise ServingError(
            "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
    servable = lookup(manager, request.model_spec)
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    make_model_spec(resp.model_spec, servable.name, None, servable.version)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for k, v in servable.signature_defs.items():
        sig_map.signature_def[k].CopyFrom(v)
    resp.metadata[SIGNATURE_DEF].Pack(sig_map)
    return resp


def model_status_response(manager: Any, request: Any) -> Any:
    """GetModelStatusImpl::GetModelStatus: every version's state (or the one asked for)."""
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    resp = get_model_status_pb2.GetModelStatusResponse()
    for v, state, error in manager.status(spec.name, version):
        st = resp.model_version_status.add()
        st.version = v
        st.state = STATE_CODES[state]
        st.status.SetInParent()
        st.status.error_code = 2 if error else 0  # UNKNOWN / OK
        st.status.error_message = error
    return resp


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService over the model manager.

    Each method follows TF Serving's implementation (prediction_service_impl.cc, get_model_metadata_impl.cc,
    get_model_status_impl.cc, model_service_impl.cc): the same checks, codes and messages, and the
    same response fields (``model_spec`` as MakeModelSpec fills it, outputs in typed ``*_val`` fields
    unless ``tensor_content``).
    The REST API builds its answers from the same responses.

    Args:
        manager: the model manager.
        tensor_content: Predict answers numeric outputs in ``tensor_content`` (raw bytes, as
            ``--enable_serialization_as_tensor_content``) instead of typed ``*_val`` fields.
    """

    def __init__(self, manager: Any, *, tensor_content: bool = False):
        self.manager = manager
        self.tensor_content = tensor_content

    @_guard
    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        """predict_util.cc's RunPredict."""
        servable = lookup(self.manager, request.model_spec)
        key = request.model_spec.signature_name or DEFAULT_SIGNATURE
        outputs = servable.predict(key, dict(request.inputs), list(request.output_filter))
        resp = predict_pb2.PredictResponse()
        make_model_spec(resp.model_spec, request.model_spec.name, key, servable.version)
        for name, arr in outputs.items():
            to_tensor_proto(arr, resp.outputs[name], content=self.tensor_content)
        return resp

    @_guard
    def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The SignatureDefMap of the version asked for."""
        return metadata_response(self.manager, request)

    @_guard
    def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        """classifier.cc's RunClassify."""
        servable = lookup(self.manager, request.model_spec)
        classes, scores = servable.classify(request.model_spec.signature_name, request.input)
        resp = classification_pb2.ClassificationResponse()
        make_model_spec(
            resp.model_spec, request.model_spec.name, request.model_spec.signature_name, servable.version
        )
        fill_classifications(resp.result, classes, scores)
        return resp

    @_guard
    def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        """regressor.cc's RunRegress."""
        servable = lookup(self.manager, request.model_spec)
        values = servable.regress(request.model_spec.signature_name, request.input)
        resp = regression_pb2.RegressionResponse()
        make_model_spec(
            resp.model_spec, request.model_spec.name, request.model_spec.signature_name, servable.version
        )
        fill_regressions(resp.result, values)
        return resp

    @_guard
    def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        """multi_inference.cc: classify/regress tasks of one model over one Input, one session run."""
        has_spec = bool(request.tasks) and request.tasks[0].HasField("model_spec")
        servable = lookup(self.manager, request.tasks[0].model_spec if has_spec else _empty_spec())
        tasks = [(t.model_spec.name, t.model_spec.signature_name, t.method_name) for t in request.tasks]
        resp = inference_pb2.MultiInferenceResponse()
        for task, (method, key, result) in zip(request.tasks, servable.multi_inference(tasks, request.input)):
            out = resp.results.add()
            make_model_spec(out.model_spec, task.model_spec.name, key, servable.version)
            if method == CLASSIFY:
                fill_classifications(out.classification_result, *result)
            else:
                fill_regressions(out.regression_result, result)
        return resp


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService: GetModelStatus, and HandleReloadConfigRequest where the manager can reload."""

    def __init__(self, manager: Any):
        self.manager = manager

    @_guard
    def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Each version's ManagerState and health."""
        return model_status_response(self.manager, request)

    @_guard
    def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # noqa: N802
        """model_service_impl.cc: serve the given ModelConfigList from now on."""
        reload = getattr(self.manager, "reload", None)
        if reload is None:
            raise ServingError("UNIMPLEMENTED", "HandleReloadConfigRequest is not offered by this server")
        if request.config.WhichOneof("config") != "model_config_list":
            raise ServingError(
                "INVALID_ARGUMENT",
                "ServerModelConfig type not supported by "
                "HandleReloadConfigRequest. Only ModelConfigList is currently supported",
            )
        from .manager import configs_from_proto
        from .textproto import StartupError

        try:
            reload(configs_from_proto(request.config))
        except StartupError as exc:
            logger.error("ReloadConfig failed: %s", exc.message)
            raise ServingError(exc.code, exc.message) from exc
        resp = model_management_pb2.ReloadConfigResponse()
        resp.status.SetInParent()
        return resp


class _Unparsed:
    """What the request deserializer returns for bytes that are not the method's message."""

    __slots__ = ("size", "error")

    def __init__(self, size: int, error: Exception):
        self.size, self.error = size, error


class UnparsedRequests(grpc.ServerInterceptor):
    """Requests whose bytes do not parse: INTERNAL, as tensorflow_model_server answers, in one log line.

    tensorflow_model_server answers a request it cannot deserialize INTERNAL (gRPC C++'s
    ``proto_utils.h``: ``ParseFromCodedStream`` failing is ``StatusCode::INTERNAL``), so that
    code stays, though the client is at fault. gRPC's Python server would answer INTERNAL too,
    but log a traceback at ERROR (``grpc._common``: "Exception deserializing message!") for
    every such request; here the deserializer never raises, and the answer is logged as one
    WARNING naming the method.
    """

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, behavior, method = handler.request_deserializer, handler.unary_unary, details.method

        def lenient(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as exc:  # noqa: BLE001 - any bytes that do not parse: the client's
                return _Unparsed(len(data), exc)

        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Unparsed):
                message = f"Cannot parse the request ({request.size} bytes): {request.error}"
                logger.warning("%s: INTERNAL: %s", method, message)
                context.abort(grpc.StatusCode.INTERNAL, message)
            return behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=lenient, response_serializer=handler.response_serializer)


DEFAULT_OPTIONS = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))


def make_server(
    manager: Any,
    host: str,
    port: int | None,
    workers: int = 16,
    *,
    credentials: Any = None,
    interceptors: Sequence[Any] = (),
    options: Sequence[tuple[str, Any]] = (),
    extra_addresses: Sequence[str] = (),
    generic_handlers: Sequence[Any] = (),
    tensor_content: bool = False,
) -> tuple[grpc.Server, int]:
    """A started gRPC server with both services; returns it and the bound TCP port (0: none).

    Args:
        manager: the model manager both services answer from.
        host: the address to bind.
        port: the TCP port (0: a free one; None: no TCP port, only ``extra_addresses``).
        workers: the handler threads.
        credentials: ``grpc.ServerCredentials`` for every port (plaintext when None).
        interceptors: ``grpc.ServerInterceptor`` s (metrics, logging); they see parsed requests
            only (:class:`UnparsedRequests` answers the others first).
        options: channel arguments; they replace the defaults (no message size limits) by key.
        extra_addresses: more addresses to listen on, e.g. ``unix:/path/to.sock``.
        generic_handlers: more services (``grpc.GenericRpcHandler``, e.g. health checking).
        tensor_content: see :class:`PredictionService`.

    Raises:
        OSError: an address cannot be listened on (the message names it).
    """
    from concurrent import futures

    keys = {k for k, _ in options}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ys-grpc"),
        interceptors=[UnparsedRequests(), *interceptors],  # the first one wraps the others
        options=[(k, v) for k, v in DEFAULT_OPTIONS if k not in keys] + list(options),
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, tensor_content=tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    if generic_handlers:
        server.add_generic_rpc_handlers(tuple(generic_handlers))
    addresses = ([f"{host}:{port}"] if port is not None else []) + list(extra_addresses)
    bound = [_listen(server, address, credentials) for address in addresses]
    server.start()
    return server, bound[0] if port is not None else 0


def _listen(server: grpc.Server, address: str, credentials: Any) -> int:
    """Add one listening port; OSError naming the address when it cannot be had."""
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if not bound:
        raise OSError(f"cannot listen on {address}")
    return bound
