"""TF Serving's REST routes (http_rest_api_handler.cc): ``/v1/models/...`` answered from the model manager."""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .. import codec
from ..errors import ServingError, from_exception
from ..grpc_api import fill_classifications, fill_regressions, metadata_response, model_status_response
from ..inference import DEFAULT_SIGNATURE

logger = logging.getLogger(__name__)

OnRequest = Callable[[str, str, str, float], None]  # (model, api, status code, latency in us)

_PREDICTION = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I
)
_MODEL_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I
)
API_PATH = re.compile(r"/v1/.*", re.I | re.S)  # what the API answers (anything else: 404)
_INT64_MAX = (1 << 63) - 1


class RestApi:
    """HttpRestApiHandler::ProcessRequest over the model manager: its routes, regexes and checks."""

    def __init__(self, manager: Any, *, on_request: OnRequest | None = None):
        self.manager = manager
        self.on_request = on_request

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer one request: (HTTP status, JSON-able body)."""
        start = time.perf_counter()
        model, api = "", ""
        try:
            model, api, call = self._route(method, path)
            answer = call(body)
            status, code = 200, "OK"
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a crash
            err = from_exception(exc)
            if err.http_status >= 500 and not isinstance(exc, ServingError):
                logger.exception("%s %s failed", method, path)
            status, code, answer = err.http_status, err.code, {"error": err.message}
        if self.on_request is not None and api:
            try:
                self.on_request(model, api, code, (time.perf_counter() - start) * 1e6)
            except Exception:  # noqa: BLE001 - metrics must never break serving
                logger.debug("REST request metrics failed", exc_info=True)
        return status, answer

    def _route(self, method: str, path: str) -> tuple[str, str, Callable[[bytes], Any]]:
        malformed = ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        regex = _PREDICTION if method == "POST" else _MODEL_STATUS if method == "GET" else None
        m = regex.fullmatch(path) if regex is not None else None
        if m is None:
            raise malformed
        name = urllib.parse.unquote(m[1] or "")
        version: int | None = None
        if m[2]:
            version = int(m[2])
            if version > _INT64_MAX:
                raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {m[2]} to numeric.")
        label = urllib.parse.unquote(m[3]) if m[3] else None
        if method == "POST":
            verb = m[4]
            if verb not in ("predict", "classify", "regress"):
                raise malformed
            api = verb.capitalize()
            return name, api, lambda body: getattr(self, f"_{verb}")(name, version, label, body)
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        if m[4] == "metadata":
            return name, "GetModelMetadata", lambda body: self._metadata(name, version, label)
        return name, "GetModelStatus", lambda body: self._status(name, version, label)

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> Any:
        doc = codec.parse_json(body)
        key = codec.signature_name(doc) or DEFAULT_SIGNATURE
        servable = self.manager.get(name, version, label)
        sig = servable.signature_defs.get(key)
        if sig is None:
            raise ServingError(
                "INVALID_ARGUMENT", f'Serving signature name: "{key}" not found in signature def'
            )
        feeds, rows = codec.parse_predict_json(
            doc, {k: v.dtype for k, v in sig.inputs.items()}, strict=codec.may_hold_booleans(body)
        )
        return codec.predict_json(servable.predict(key, feeds), rows)

    def _examples_request(
        self, name: str, version: int | None, label: str | None, body: bytes
    ) -> tuple[Any, str, Any]:
        from tensorflow_serving.apis import input_pb2

        doc = codec.parse_json(body)
        key = codec.signature_name(doc)
        inp = input_pb2.Input()
        codec.fill_input_from_json(doc, inp)
        return self.manager.get(name, version, label), key, inp

    def _classify(self, name: str, version: int | None, label: str | None, body: bytes) -> Any:
        from tensorflow_serving.apis import classification_pb2

        servable, key, inp = self._examples_request(name, version, label, body)
        result = fill_classifications(classification_pb2.ClassificationResult(), *servable.classify(key, inp))
        return codec.classification_json(result)

    def _regress(self, name: str, version: int | None, label: str | None, body: bytes) -> Any:
        from tensorflow_serving.apis import regression_pb2

        servable, key, inp = self._examples_request(name, version, label, body)
        result = fill_regressions(regression_pb2.RegressionResult(), servable.regress(key, inp))
        return codec.regression_json(result)

    def _spec(self, request: Any, name: str, version: int | None, label: str | None) -> Any:
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if label:
            request.model_spec.version_label = label
        return request

    def _status(self, name: str, version: int | None, label: str | None) -> Any:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        if label:
            cfg = self.manager.configs.get(name)
            if cfg is None or label not in cfg.labels:
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version, label = cfg.labels[label], None
        request = self._spec(get_model_status_pb2.GetModelStatusRequest(), name, version, label)
        return json_format.MessageToDict(
            model_status_response(self.manager, request), always_print_fields_with_no_presence=True
        )

    def _metadata(self, name: str, version: int | None, label: str | None) -> Any:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = self._spec(get_model_metadata_pb2.GetModelMetadataRequest(), name, version, label)
        request.metadata_field.append("signature_def")
        resp = metadata_response(self.manager, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig_map)
        opts = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
        return {
            "model_spec": json_format.MessageToDict(resp.model_spec, **opts),
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, **opts)},
        }

