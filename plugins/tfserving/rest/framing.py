"""HTTP/1.1 message framing: a request's head, its body (Content-Length or chunked) and a response's bytes."""

from __future__ import annotations

import dataclasses
import http
import json
import time
from collections.abc import Mapping
from typing import Any


class HttpError(Exception):
    """A request refused by the transport itself (its status and message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass
class Request:
    """One request as it is read: its head, then its body."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    length: int | None  # Content-Length, None when chunked
    body: bytearray = dataclasses.field(default_factory=bytearray)
    chunk_left: int = -1  # chunked: bytes left in the current chunk (-1: a size line is next)
    chunks_done: bool = False
    body_start: float = 0.0

    @property
    def closes(self) -> bool:
        """The client asked for the connection to close after this request."""
        keep = self.headers.get("connection", "").lower()
        return "close" in keep or (self.version == "HTTP/1.0" and "keep-alive" not in keep)

    @property
    def expects_continue(self) -> bool:
        """A body is coming and the client waits for ``100 Continue`` first."""
        expects = "100-continue" in self.headers.get("expect", "").lower()
        return expects and (self.length is None or self.length > 0)


def _header_fields(lines: list[str]) -> tuple[dict[str, str], set[str]]:
    """Header fields by lower-case name (repeats joined with ``, ``) and every Content-Length given."""
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"Malformed header line: {line[:200]!r}")
        key, value = name.lower(), value.strip()
        if key == "content-length":
            lengths.add(value)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers, lengths


def _body_length(headers: Mapping[str, str], lengths: set[str], max_body_bytes: int) -> int | None:
    """The body's length (None: chunked); refuses what cannot be framed or is too large."""
    te = headers.get("transfer-encoding", "").lower()
    if te and te != "chunked":
        raise HttpError(501, f"Transfer-Encoding {te!r} is not supported")
    if te and lengths:
        raise HttpError(400, "A request cannot have both Content-Length and Transfer-Encoding")
    if not lengths:
        return None if te else 0
    text = next(iter(lengths))
    if len(lengths) != 1 or not text.isdigit() or not text.isascii():
        raise HttpError(400, f"Invalid Content-Length: {', '.join(sorted(lengths))[:100]}")
    length = int(text)
    if length > max_body_bytes:
        raise HttpError(
            413, f"Request body of {length} bytes is larger than the limit of {max_body_bytes} bytes"
        )
    return length


def parse_head(buf: bytearray, max_header_bytes: int, max_body_bytes: int) -> Request | None:
    """Take a request line and headers off ``buf``; None until they have all arrived."""
    while buf[:2] == b"\r\n":  # stray CRLFs between requests
        del buf[:2]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > max_header_bytes:
            raise HttpError(431, "Request header fields too large")
        return None
    if end > max_header_bytes:
        raise HttpError(431, "Request header fields too large")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(400, f"Malformed request line: {lines[0][:200]!r}")
    headers, lengths = _header_fields(lines[1:])
    length = _body_length(headers, lengths, max_body_bytes)
    return Request(parts[0], parts[1], parts[2], headers, length, body_start=time.monotonic())


def parse_body(req: Request, buf: bytearray, max_body_bytes: int, max_header_bytes: int) -> bool:
    """Move what has arrived of the body from ``buf`` into ``req``; True once it is complete."""
    if req.length is not None:
        take = min(req.length - len(req.body), len(buf))
        req.body += buf[:take]
        del buf[:take]
        return len(req.body) == req.length
    return parse_chunks(req, buf, max_body_bytes, max_header_bytes)


def _chunk_size(req: Request, buf: bytearray, max_body_bytes: int) -> int | None:
    """Take a chunk-size line off ``buf``: the size, or None until the line has arrived."""
    eol = buf.find(b"\r\n")
    if eol < 0:
        if len(buf) > 1024:
            raise HttpError(400, "Malformed chunk size line")
        return None
    size_text = bytes(buf[:eol]).split(b";")[0].strip()
    try:
        size = int(size_text, 16)
    except ValueError:
        raise HttpError(400, "Malformed chunk size line") from None
    if size < 0 or not size_text.isalnum():
        raise HttpError(400, "Malformed chunk size line")
    del buf[: eol + 2]
    if len(req.body) + size > max_body_bytes:
        raise HttpError(413, f"Request body is larger than the limit of {max_body_bytes} bytes")
    return size


def parse_chunks(req: Request, buf: bytearray, max_body_bytes: int, max_header_bytes: int) -> bool:
    """A chunked body: chunks, the last (size 0) one, trailers; True once it is complete."""
    while True:
        if req.chunks_done:  # trailers up to an empty line
            end = buf.find(b"\r\n\r\n") if buf[:2] != b"\r\n" else -2
            if end == -1:
                if len(buf) > max_header_bytes:
                    raise HttpError(431, "Chunked trailers too large")
                return False
            del buf[: 2 if end == -2 else end + 4]
            return True
        if req.chunk_left < 0:
            size = _chunk_size(req, buf, max_body_bytes)
            if size is None:
                return False
            if size == 0:
                req.chunks_done = True
                continue
            req.chunk_left = size
        take = min(req.chunk_left, len(buf))
        req.body += buf[:take]
        del buf[:take]
        req.chunk_left -= take
        if req.chunk_left:
            return False
        if len(buf) < 2:
            req.chunk_left = 0  # the chunk's CRLF is still to come
            return False
        if buf[:2] != b"\r\n":
            raise HttpError(400, "Malformed chunk: missing CRLF")
        del buf[:2]
        req.chunk_left = -1


def response(status: int, body: bytes, *, content_type: str = "application/json", close: bool = False,
             head: bool = False, headers: Mapping[str, str] | None = None) -> bytes:
    """A whole response: status line, Content-Type and -Length, ``headers``, the body (none for HEAD)."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Client Closed Request" if status == 499 else "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


def json_bytes(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()
