"""TF Serving's REST API: /v1/models/<name>[/versions/N|/labels/L][/metadata|:predict|:classify|:regress]."""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from .codec import array_to_json, parse_predict_json, predict_json
from .errors import ServingError, from_exception
from .grpc_api import STATE_CODES
from .manager import ModelManager

logger = logging.getLogger(__name__)

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<meta>/metadata)?(?::(?P<verb>predict|classify|regress))?/?$"
)


def _example_from_json(obj: Any) -> Any:
    """A tf.train.Example from TF Serving's JSON example ({feature: value or list})."""
    import base64

    from tensorflow.core.example import example_pb2

    if not isinstance(obj, dict):
        raise ServingError("INVALID_ARGUMENT", "each example must be a JSON object")
    ex = example_pb2.Example()
    for key, value in obj.items():
        vals = value if isinstance(value, list) else [value]
        feat = ex.features.feature[key]
        if all(isinstance(v, bool) or isinstance(v, int) for v in vals):
            feat.int64_list.value.extend(int(v) for v in vals)
        elif all(isinstance(v, (int, float)) for v in vals):
            feat.float_list.value.extend(float(v) for v in vals)
        elif all(isinstance(v, (str, dict)) for v in vals):
            feat.bytes_list.value.extend(
                base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in vals
            )
        else:
            raise ServingError("INVALID_ARGUMENT", f"feature '{key}' mixes value types")
    return ex


class _Handler(BaseHTTPRequestHandler):
    server_version = "yellowstone-tfserving"
    protocol_version = "HTTP/1.1"
    manager: ModelManager

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            body = None
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            self._send(200, self._route(method, body))
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a crash
            err = from_exception(exc)
            if err.code == "INTERNAL":
                logger.exception("%s %s failed", method, self.path)
            self._send(err.http_status, {"error": err.message})

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _route(self, method: str, body: bytes | None) -> Any:
        m = _PATH.match(self.path.split("?", 1)[0])
        if not m or (method == "GET") != (m["verb"] is None) or (m["meta"] and m["verb"]):
            raise ServingError("NOT_FOUND", f"Malformed request: {method} {self.path}")
        name, version, label = m["name"], m["version"], m["label"]
        if method == "GET" and not m["meta"]:
            return self._status(name, version, label)
        servable = self.manager.get(name, int(version) if version else None, label)
        if m["meta"]:
            from google.protobuf import json_format
            from tensorflow_serving.apis import get_model_metadata_pb2

            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in servable.signature_defs.items():
                sig_map.signature_def[k].CopyFrom(v)
            return {
                "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                "metadata": {
                    "signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)
                },
            }
        try:
            req = json.loads(body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from exc
        if not isinstance(req, dict):
            raise ServingError("INVALID_ARGUMENT", "JSON Value: request must be a JSON object")
        key = req.get("signature_name") or "serving_default"
        if m["verb"] == "predict":
            sig = servable.signature(key)
            feeds, rows = parse_predict_json(req, {k: v.dtype for k, v in sig.inputs.items()})
            return predict_json(servable.predict(key, feeds), rows)
        examples = req.get("examples")
        if not isinstance(examples, list) or not examples:
            raise ServingError("INVALID_ARGUMENT", "'examples' must be a non-empty JSON list")
        context = _example_from_json(req["context"]) if "context" in req else None
        serialized = []
        for e in examples:
            ex = _example_from_json(e)
            if context is not None:
                merged = type(ex)()
                merged.CopyFrom(context)
                merged.MergeFrom(ex)
                ex = merged
            serialized.append(ex.SerializeToString())
        if m["verb"] == "regress":
            return {"results": [float(v) for v in servable.regress(key, serialized)]}
        classes, scores = servable.classify(key, serialized)
        n, k = (classes if classes is not None else scores).shape[:2]
        results = []
        for i in range(n):
            row = []
            for j in range(k):
                label = (
                    array_to_json(np.asarray([classes[i, j]], dtype=object))[0] if classes is not None else ""
                )
                row.append([label, float(scores[i, j])] if scores is not None else [label])
            results.append(row)
        return {"results": results}

    def _status(self, name: str, version: str | None, label: str | None) -> Any:
        if label:
            cfg = self.manager.configs.get(name)
            if cfg is None or label not in cfg.labels:
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version = str(cfg.labels[label])
        rows = self.manager.status(name, int(version) if version else None)
        assert all(state in STATE_CODES for _, state, _ in rows)
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": state,
                    "status": {"error_code": "UNKNOWN" if err else "OK", "error_message": err},
                }
                for v, state, err in rows
            ]
        }


def make_server(manager: ModelManager, host: str, port: int) -> tuple[ThreadingHTTPServer, int]:
    """A REST server serving in a daemon thread; returns it and the bound port."""
    handler = type("Handler", (_Handler,), {"manager": manager})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ys-rest", daemon=True).start()
    return server, server.server_address[1]
