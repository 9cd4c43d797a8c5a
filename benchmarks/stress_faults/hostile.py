"""Good and hostile requests for each server protocol, and how they are sent and read back.

A :class:`Request` is plain data (bytes to send, the answer a good one must get), built by a
protocol (:data:`PROTOCOLS`) from the model's fixed inputs and the framework's outputs for them.
REST requests go over a raw socket (:func:`send_http`) so that broken framing (a truncated body,
a bad ``Content-Length``) reaches the server as written; gRPC requests are serialized here and
sent as bytes on a generic method (:func:`send_grpc`), so a malformed message does too.
"""

from __future__ import annotations

import dataclasses
import json
import random
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

GOOD = "good"
# Every hostile kind; each protocol sends the subset that its wire format can carry.
KINDS = ("malformed_json", "wrong_shape", "wrong_dtype", "missing_input", "unknown_model",
         "huge_dims", "negative_dims", "deep_nesting", "non_numeric", "inf_1e400", "booleans",
         "truncated_body", "bad_content_length", "empty_body", "content_mismatch",
         "malformed_proto")
NESTING = 100_000  # levels of [ ] in deep_nesting
HUGE_ROW = 200_000  # values in the one row huge_dims sends over JSON (~1 MB)
HUGE_DIM = 2**31  # dimension claimed by huge_dims where the wire format carries a shape
ATOL, RTOL = 1e-4, 1e-3
UNKNOWN_MODEL = "no_such_model"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelData:
    """The served model as the clients see it: names, fixed inputs and the framework's outputs."""

    name: str
    input_name: str
    output_name: str
    x: np.ndarray  # [N, features] float32
    y: np.ndarray  # [N, outputs] float32: the framework's answer for x


@dataclasses.dataclass(frozen=True, kw_only=True)
class Request:
    """One request as bytes, and what a good one must be answered with.

    ``path`` is the REST path or the gRPC method; ``content_length`` replaces the header's
    value (None: the body's length); ``send_bytes`` sends only that much of the body and then
    closes the sending side.
    """

    kind: str
    transport: str  # rest | grpc
    codec: str  # how a good answer's output is read (see decode_output)
    path: str
    body: bytes = b""
    content_length: str | None = None
    send_bytes: int | None = None
    expect: np.ndarray | None = None

    @property
    def good(self) -> bool:
        return self.kind == GOOD


@dataclasses.dataclass(frozen=True)
class Reply:
    """What came back: an HTTP status (int), a gRPC code name (str), or None (no answer)."""

    status: int | str | None
    body: bytes = b""
    error: str = ""


# -- the protocols ---------------------------------------------------------------------------
def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _rows(model: ModelData, rng: random.Random, most: int) -> tuple[np.ndarray, np.ndarray]:
    n = rng.randint(1, most)
    idx = [rng.randrange(len(model.x)) for _ in range(n)]
    return model.x[idx], model.y[idx]


class Protocol:
    """A wire protocol of one server: good requests and the hostile kinds it can carry."""

    name = ""
    transport = "rest"
    kinds: tuple[str, ...] = ()

    def __init__(self, model: ModelData):
        self.model = model

    def good(self, rng: random.Random) -> Request:
        raise NotImplementedError

    def bad(self, kind: str, rng: random.Random) -> Request:
        raise NotImplementedError

    def request(self, rng: random.Random, bad_fraction: float) -> Request:
        """A good request, or with probability ``bad_fraction`` a hostile one of a random kind."""
        if self.kinds and rng.random() < bad_fraction:
            return self.bad(rng.choice(self.kinds), rng)
        return self.good(rng)


class RestProtocol(Protocol):
    """Common hostile REST kinds; subclasses say how a JSON body carries rows."""

    codec = ""
    framing_kinds = ("truncated_body", "bad_content_length", "empty_body", "malformed_json",
                     "deep_nesting", "unknown_model")

    def path_for(self, model_name: str) -> str:
        raise NotImplementedError

    def body_for(self, rows: Any) -> bytes:
        """A JSON body carrying ``rows`` (nested lists, or any JSON value in their place)."""
        raise NotImplementedError

    def raw_body(self, rows_json: str) -> bytes:
        """A body with ``rows_json`` spliced in as written (for text JSON cannot round-trip)."""
        raise NotImplementedError

    def rest(self, kind: str, body: bytes, **kw: Any) -> Request:
        return Request(kind=kind, transport="rest", codec=self.codec,
                       path=self.path_for(self.model.name), body=body, **kw)

    _memo: dict[str, Request] | None = None

    def bad(self, kind: str, rng: random.Random) -> Request:
        if kind in ("huge_dims", "deep_nesting"):  # large, always the same: build once
            if self._memo is None:
                self._memo = {}
            if kind not in self._memo:
                self._memo[kind] = self._bad(kind, rng)
            return self._memo[kind]
        return self._bad(kind, rng)

    def _bad(self, kind: str, rng: random.Random) -> Request:
        good = self.good(rng)
        width = self.model.x.shape[1]
        if kind == "malformed_json":
            return self.rest(kind, good.body[: max(1, len(good.body) // 2)])
        if kind == "truncated_body":
            return self.rest(kind, good.body, send_bytes=len(good.body) // 2)
        if kind == "bad_content_length":
            value = rng.choice(["-1", "abc", "99999999999999999999", "12, 13"])
            return self.rest(kind, good.body, content_length=value)
        if kind == "empty_body":
            return self.rest(kind, b"")
        if kind == "unknown_model":
            return dataclasses.replace(good, kind=kind, path=self.path_for(UNKNOWN_MODEL),
                                       expect=None)
        if kind == "deep_nesting":
            return self.rest(kind, self.raw_body("[" * NESTING + "]" * NESTING))
        if kind == "wrong_shape":
            return self.rest(kind, self.body_for([[0.5] * (width - 1)]))
        if kind == "huge_dims":
            return self.rest(kind, self.body_for([[0.5] * HUGE_ROW]))
        if kind == "wrong_dtype":
            return self.rest(kind, self.body_for([["0.5"] * width]))
        if kind == "non_numeric":
            return self.rest(kind, self.body_for([[None] * width]))
        if kind == "booleans":
            return self.rest(kind, self.body_for([[True] * width]))
        if kind == "inf_1e400":
            return self.rest(kind, self.raw_body("[[" + ", ".join(["1e400"] * width) + "]]"))
        raise ValueError(f"{self.name} cannot send {kind!r}")


class TorchServeRest(RestProtocol):
    """TorchServe's inference API; the handler reads one JSON row per request (batching is TS's)."""

    # No inf_1e400 or booleans: TorchServe hands the body to the handler, and JSON's 1e400
    # (inf) and true/false are values a handler may take; only TF Serving defines them as errors.
    name, codec = "torchserve-rest", "ts"
    kinds = ("malformed_json", "wrong_shape", "wrong_dtype", "missing_input", "unknown_model",
             "huge_dims", "deep_nesting", "non_numeric",
             "truncated_body", "bad_content_length", "empty_body")

    def path_for(self, model_name: str) -> str:
        return f"/predictions/{model_name}"

    def body_for(self, rows: Any) -> bytes:
        return _json(rows[0] if isinstance(rows, list) and len(rows) == 1 else rows)

    def raw_body(self, rows_json: str) -> bytes:
        inner = rows_json[1:-1] if rows_json.startswith("[[") else rows_json
        return inner.encode()

    def good(self, rng: random.Random) -> Request:
        x, y = _rows(self.model, rng, 1)
        return self.rest(GOOD, _json(x[0].tolist()), expect=y[0])

    def bad(self, kind: str, rng: random.Random) -> Request:
        if kind == "missing_input":
            return self.rest(kind, b"{}")
        return super().bad(kind, rng)


class KServeRest(RestProtocol):
    """KServe's V2 (Open Inference Protocol) REST; good requests alternate with V1."""

    # No inf_1e400 or booleans: KServe reads V1/V2 JSON numbers with Python's json and NumPy,
    # which take 1e400 (inf) and true/false for numbers; only TF Serving refuses them.
    name, codec = "kserve-rest", "v2"
    kinds = ("malformed_json", "wrong_shape", "wrong_dtype", "missing_input", "unknown_model",
             "huge_dims", "negative_dims", "deep_nesting", "non_numeric",
             "truncated_body", "bad_content_length", "empty_body", "content_mismatch")

    def path_for(self, model_name: str) -> str:
        return f"/v2/models/{model_name}/infer"

    def _v2(self, shape: list[int], data: Any, datatype: str = "FP32") -> dict:
        return {"inputs": [{"name": self.model.input_name, "shape": shape,
                            "datatype": datatype, "data": data}]}

    def body_for(self, rows: Any) -> bytes:
        shape = [len(rows), len(rows[0])]
        return _json(self._v2(shape, [v for row in rows for v in row]))

    def raw_body(self, rows_json: str) -> bytes:
        width = self.model.x.shape[1]
        return _json(self._v2([1, width], "@DATA@")).replace(b'"@DATA@"', rows_json.encode())

    def good(self, rng: random.Random) -> Request:
        x, y = _rows(self.model, rng, 4)
        if rng.random() < 0.5:
            return Request(kind=GOOD, transport="rest", codec="v1", expect=y,
                           path=f"/v1/models/{self.model.name}:predict",
                           body=_json({"instances": x.tolist()}))
        return self.rest(GOOD, _json(self._v2(list(x.shape), x.ravel().tolist())), expect=y)

    def bad(self, kind: str, rng: random.Random) -> Request:
        width = self.model.x.shape[1]
        if kind == "missing_input":
            return self.rest(kind, _json({"inputs": []}))
        if kind == "wrong_dtype":
            return self.rest(kind, _json(self._v2([1, width], [1] * width, "INT64")))
        if kind == "huge_dims":
            return self.rest(kind, _json(self._v2([HUGE_DIM, HUGE_DIM], [0.5] * width)))
        if kind == "negative_dims":
            return self.rest(kind, _json(self._v2([-1, width], [0.5] * width)))
        if kind == "content_mismatch":
            return self.rest(kind, _json(self._v2([2, width], [0.5] * width)))
        return super().bad(kind, rng)


class TfsRest(RestProtocol):
    """TF Serving's REST predict API (row format: ``instances``)."""

    name, codec = "tfserving-rest", "tfs_rest"
    kinds = ("malformed_json", "wrong_shape", "wrong_dtype", "missing_input", "unknown_model",
             "huge_dims", "deep_nesting", "non_numeric", "inf_1e400", "booleans",
             "truncated_body", "bad_content_length", "empty_body")

    def path_for(self, model_name: str) -> str:
        return f"/v1/models/{model_name}:predict"

    def body_for(self, rows: Any) -> bytes:
        return _json({"instances": rows})

    def raw_body(self, rows_json: str) -> bytes:
        return b'{"instances": ' + rows_json.encode() + b"}"

    def good(self, rng: random.Random) -> Request:
        x, y = _rows(self.model, rng, 4)
        return self.rest(GOOD, self.body_for(x.tolist()), expect=y)

    def bad(self, kind: str, rng: random.Random) -> Request:
        if kind == "missing_input":
            return self.rest(kind, _json({"inputs": {}}))
        return super().bad(kind, rng)


class GrpcProtocol(Protocol):
    """Requests serialized to bytes; hostile kinds are messages a client library would refuse."""

    transport = "grpc"
    method = ""
    codec = ""
    kinds = ("wrong_shape", "wrong_dtype", "missing_input", "unknown_model", "huge_dims",
             "negative_dims", "content_mismatch", "malformed_proto", "empty_body")

    def message(self, model_name: str, shape: list[int] | None, content: bytes,
                dtype: str = "float32") -> bytes:
        """A serialized request: one input of ``shape`` (None: no input) holding ``content``."""
        raise NotImplementedError

    def req(self, kind: str, body: bytes, expect: np.ndarray | None = None) -> Request:
        return Request(kind=kind, transport="grpc", codec=self.codec, path=self.method,
                       body=body, expect=expect)

    def good(self, rng: random.Random) -> Request:
        x, y = _rows(self.model, rng, 4)
        return self.req(GOOD, self.message(self.model.name, list(x.shape), x.tobytes()), y)

    def bad(self, kind: str, rng: random.Random) -> Request:
        width = self.model.x.shape[1]
        row = np.full((1, width), 0.5, np.float32).tobytes()
        name = self.model.name
        if kind == "wrong_shape":
            return self.req(kind, self.message(name, [1, width - 1], row[:-4]))
        if kind == "wrong_dtype":
            return self.req(kind, self.message(name, [1, width], np.ones((1, width)).tobytes(),
                                               "float64"))
        if kind == "missing_input":
            return self.req(kind, self.message(name, None, b""))
        if kind == "unknown_model":
            return self.req(kind, self.message(UNKNOWN_MODEL, [1, width], row))
        if kind == "huge_dims":
            return self.req(kind, self.message(name, [HUGE_DIM, HUGE_DIM], row))
        if kind == "negative_dims":
            return self.req(kind, self.message(name, [-5, width], row))
        if kind == "content_mismatch":
            return self.req(kind, self.message(name, [4, width], row[:7]))
        if kind == "malformed_proto":
            return self.req(kind, b"\xff\xff\xff\xff\x0f\x12\x99garbage" + bytes(range(256))[::7])
        if kind == "empty_body":
            return self.req(kind, b"")
        raise ValueError(f"{self.name} cannot send {kind!r}")


def _kserve_pb() -> Any:
    """KServe's V2 gRPC messages. Importing ``kserve`` parses ``sys.argv`` with its server's
    flags (``kserve.model_server``), so it is imported with an empty command line."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        from kserve.protocol.grpc import grpc_predict_v2_pb2
    finally:
        sys.argv = saved
    return grpc_predict_v2_pb2


class KServeGrpc(GrpcProtocol):
    """KServe's V2 gRPC ``ModelInfer`` with raw tensor contents."""

    name, codec = "kserve-grpc", "kserve_grpc"
    method = "/inference.GRPCInferenceService/ModelInfer"
    _DT = {"float32": "FP32", "float64": "FP64"}

    def message(self, model_name, shape, content, dtype="float32"):
        pb = _kserve_pb()
        req = pb.ModelInferRequest(model_name=model_name)
        if shape is not None:
            req.inputs.add(name=self.model.input_name, datatype=self._DT[dtype], shape=shape)
            req.raw_input_contents.append(content)
        return req.SerializeToString()


class TfsGrpc(GrpcProtocol):
    """TF Serving's ``PredictionService/Predict`` with ``tensor_content``."""

    name, codec = "tfserving-grpc", "tfs_grpc"
    method = "/tensorflow.serving.PredictionService/Predict"
    kinds = (*GrpcProtocol.kinds, "unknown_signature")
    _DT = {"float32": 1, "float64": 2}  # DT_FLOAT, DT_DOUBLE

    def message(self, model_name, shape, content, dtype="float32", signature=""):
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        if signature:
            req.model_spec.signature_name = signature
        if shape is not None:
            t = req.inputs[self.model.input_name]
            t.dtype = self._DT[dtype]
            for d in shape:
                t.tensor_shape.dim.add(size=d)
            t.tensor_content = content
        return req.SerializeToString()

    def bad(self, kind, rng):
        if kind == "unknown_signature":
            x = self.model.x[:1]
            return self.req(kind, self.message(self.model.name, list(x.shape), x.tobytes(),
                                               signature="no_such_signature"))
        return super().bad(kind, rng)


PROTOCOLS: dict[str, type[Protocol]] = {
    p.name: p for p in (TorchServeRest, KServeRest, KServeGrpc, TfsRest, TfsGrpc)}
SERVER_PROTOCOLS = {"torchserve": ("torchserve-rest",),
                    "kserve": ("kserve-rest", "kserve-grpc"),
                    "tfserving": ("tfserving-rest", "tfserving-grpc")}


# -- reading answers -------------------------------------------------------------------------
def _kserve_output(body: bytes) -> np.ndarray:
    pb = _kserve_pb()
    resp = pb.ModelInferResponse.FromString(body)
    out = resp.outputs[0]
    if resp.raw_output_contents:
        arr = np.frombuffer(resp.raw_output_contents[0], np.float32)
    else:
        arr = np.asarray(out.contents.fp32_contents, np.float32)
    return arr.reshape(list(out.shape))


def _tfs_output(body: bytes, name: str) -> np.ndarray:
    from tensorflow_serving.apis import predict_pb2

    t = predict_pb2.PredictResponse.FromString(body).outputs[name]
    shape = [d.size for d in t.tensor_shape.dim]
    arr = (np.frombuffer(t.tensor_content, np.float32) if t.tensor_content
           else np.asarray(t.float_val, np.float32))
    return arr.reshape(shape)


def decode_output(codec: str, body: bytes, output_name: str = "") -> np.ndarray:
    """The output tensor of a good answer (raises on anything malformed)."""
    if codec == "kserve_grpc":
        return _kserve_output(body)
    if codec == "tfs_grpc":
        return _tfs_output(body, output_name)
    doc = json.loads(body)
    if codec == "ts":
        return np.asarray(doc, np.float32)
    if codec == "v2":
        out = doc["outputs"][0]
        return np.asarray(out["data"], np.float32).reshape(out["shape"])
    if codec in ("v1", "tfs_rest"):
        return np.asarray(doc["predictions"], np.float32)
    raise ValueError(f"unknown codec {codec!r}")


def answer_matches(req: Request, reply: Reply, output_name: str = "") -> bool:
    """True when a good request's answer holds the framework's output (within tolerance)."""
    if req.expect is None:
        return False
    try:
        got = decode_output(req.codec, reply.body, output_name)
    except Exception:  # noqa: BLE001 - any unreadable answer is a wrong one
        return False
    return got.shape == req.expect.shape and bool(
        np.allclose(got, req.expect, atol=ATOL, rtol=RTOL))


# -- sending ---------------------------------------------------------------------------------
def _parse_http(raw: bytes) -> Reply:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return Reply(None, raw, "incomplete answer")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Reply(None, raw, f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body, pos = b"", 0
        while True:
            end = rest.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(rest[pos:end].split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body += rest[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
        return Reply(status, body)
    if b"content-length" in headers:
        return Reply(status, rest[: int(headers[b"content-length"])])
    return Reply(status, rest)


def _complete(raw: bytes) -> bool:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    low = head.lower()
    marker = b"content-length:"
    if marker in low:
        value = low.split(marker, 1)[1].split(b"\r\n", 1)[0].strip()
        return value.isdigit() and len(rest) >= int(value)
    return b"chunked" in low and rest.endswith(b"0\r\n\r\n")


def send_http(addr: tuple[str, int], req: Request, timeout: float) -> Reply:
    """POST ``req`` on a fresh connection (``Connection: close``) and read the answer."""
    length = req.content_length if req.content_length is not None else str(len(req.body))
    head = (f"POST {req.path} HTTP/1.1\r\nHost: {addr[0]}:{addr[1]}\r\n"
            f"Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    body = req.body if req.send_bytes is None else req.body[: req.send_bytes]
    deadline = time.monotonic() + timeout
    raw = b""
    try:
        with socket.create_connection(addr, timeout=timeout) as sock:
            try:
                sock.sendall(head + body)
                if req.send_bytes is not None:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer (and close) before it has read everything
            while not _complete(raw):
                left = deadline - time.monotonic()
                if left <= 0:
                    return Reply(None, raw, "timeout")
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
    except TimeoutError:
        return Reply(None, raw, "timeout")
    except OSError as exc:
        if not raw:
            return Reply(None, b"", f"{type(exc).__name__}: {exc}")
    if not raw:
        return Reply(None, b"", "connection closed without an answer")
    return _parse_http(raw)


def grpc_channel(target: str) -> Any:
    """A channel that reconnects fast (a restarted server is found within half a second)."""
    import grpc

    return grpc.insecure_channel(target, options=[
        ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500), ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20)])


def send_grpc(channel: Any, req: Request, timeout: float) -> Reply:
    """Send ``req.body`` as the serialized request of method ``req.path``; bytes back."""
    import grpc

    call: Callable[..., bytes] = channel.unary_unary(req.path)  # bytes in, bytes out
    try:
        return Reply("OK", call(req.body, timeout=timeout))
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        name = code.name if code is not None else "UNKNOWN"
        if name == "DEADLINE_EXCEEDED":
            return Reply(None, b"", "timeout")
        return Reply(name, (exc.details() or "").encode() if hasattr(exc, "details") else b"")
