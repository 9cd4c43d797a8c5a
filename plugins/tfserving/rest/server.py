"""The REST transport: a bounded HTTP/1.1 server (a selector thread for I/O, a fixed worker pool, limits)."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import selectors
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .framing import HttpError, Request, json_bytes, parse_body, parse_head, response

logger = logging.getLogger(__name__)

App = Callable[[str, str, Mapping[str, str], bytes], tuple[int, str, bytes]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestOptions:
    """The REST server's limits.

    Attributes:
        num_threads: workers answering requests (``--rest_api_num_threads``; 0: 4 per core,
            TF Serving's default).
        read_timeout_s: how long a connection may take to send a request's headers (and stay
            idle between requests), and, with 1 s per MiB on top, its body.
        max_body_bytes: larger bodies are refused with 413.
        max_header_bytes: a longer request line and headers are refused with 431.
        max_connections: connections beyond this are closed on accept.
    """

    num_threads: int = 0
    read_timeout_s: float = 30.0
    max_body_bytes: int = 256 << 20
    max_header_bytes: int = 64 << 10
    max_connections: int = 1024

    def __post_init__(self) -> None:
        from yellowstone.errors import ConfigError

        if (
            self.num_threads < 0
            or self.read_timeout_s <= 0
            or self.max_body_bytes <= 0
            or self.max_header_bytes < 1024
            or self.max_connections < 1
        ):
            raise ConfigError(f"invalid REST options: {self}")

    @property
    def threads(self) -> int:
        """The worker count in effect."""
        if self.num_threads:
            return self.num_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return 4 * (cores or 1)

    @classmethod
    def from_env(cls, **explicit: Any) -> RestOptions:
        """Explicit values (None: unset) over ``YELLOWSTONE_TFSERVING_REST_*`` over the defaults."""
        env = {
            "num_threads": ("YELLOWSTONE_TFSERVING_REST_THREADS", int),
            "read_timeout_s": ("YELLOWSTONE_TFSERVING_REST_READ_TIMEOUT_S", float),
            "max_body_bytes": ("YELLOWSTONE_TFSERVING_REST_MAX_BODY_BYTES", int),
            "max_connections": ("YELLOWSTONE_TFSERVING_REST_MAX_CONNECTIONS", int),
        }
        values: dict[str, Any] = {}
        for key, (var, kind) in env.items():
            if explicit.get(key) is not None:
                values[key] = explicit[key]
            elif os.environ.get(var):
                values[key] = kind(os.environ[var])
        return cls(**values)


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "state", "deadline", "req", "close_after", "head")

    def __init__(self, sock: socket.socket, now: float, timeout: float):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.state = "head"  # head -> body -> busy -> write -> head ...
        self.deadline = now + timeout
        self.req: Request | None = None
        self.close_after = False
        self.head = False


_MIN_RATE = 1 << 20  # bytes per second a body may take beyond the read timeout


class HttpServer:
    """HTTP/1.1 with keep-alive: a selector thread for I/O, a fixed worker pool for answers.

    Idle or slow clients hold a socket, never a thread: workers get complete requests only, and
    malformed framing (a bad ``Content-Length``, oversized headers or bodies) is refused first.

    Args:
        app: ``(method, path, headers, body) -> (status, content type, body)``, run on a worker.
        host, port: where to listen (port 0: a free one).
        options: the limits.
        headers: added to every response, the transport's own refusals included.
    """

    def __init__(self, app: App, host: str, port: int, options: RestOptions,
                 headers: Mapping[str, str] | None = None):
        self.app, self.options = app, options
        self.headers = dict(headers or {})
        self._listener = socket.create_server((host, port), backlog=1024)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._done: queue.SimpleQueue[tuple[_Conn, bytes, bool]] = queue.SimpleQueue()
        self._conns: set[_Conn] = set()
        self._pool = ThreadPoolExecutor(options.threads, thread_name_prefix="ys-rest")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ys-rest-io", daemon=True)
        self._thread.start()

    @property
    def open_connections(self) -> int:
        """Connections currently open (reading, answering or idle)."""
        return len(self._conns)

    def shutdown(self) -> None:
        """Stop accepting, close every connection, let running answers finish."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the I/O thread --------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                waits = [c.deadline for c in self._conns if c.state != "busy"]
                timeout = max(0.0, min(waits) - now) if waits else 1.0
                for key, mask in self._sel.select(min(timeout, 1.0)):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    elif mask & selectors.EVENT_READ:
                        self._on_readable(key.data)
                    elif mask & selectors.EVENT_WRITE:
                        self._flush(key.data)
                self._expire(time.monotonic())
        except Exception:  # noqa: BLE001 - the I/O thread must say why it stopped
            logger.exception("the REST server's I/O loop failed")
        finally:
            for conn in list(self._conns):
                self._close(conn)
            for s in (self._listener, self._wake_r, self._wake_w):
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
            self._sel.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                logger.warning("REST accept failed: %s", exc)
                return
            if len(self._conns) >= self.options.max_connections:
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, time.monotonic(), self.options.read_timeout_s)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                conn, data, close = self._done.get_nowait()
            except queue.Empty:
                return
            if conn in self._conns:
                self._start_write(conn, data, close)

    def _close(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns if c.state != "busy" and c.deadline <= now]:
            logger.debug("REST connection closed: no complete %s within the timeout", conn.state)
            self._close(conn)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        self._advance(conn)


    def _advance(self, conn: _Conn) -> None:
        """Parse what has arrived; hand a complete request to a worker."""
        try:
            if conn.state == "head" and not self._read_head(conn):
                return
            if conn.state == "body" and not self._read_body(conn):
                return
        except HttpError as exc:
            data = response(exc.status, json_bytes({"error": exc.message}), close=True, headers=self.headers)
            self._start_write(conn, data, True)
            return
        req = conn.req
        assert req is not None
        conn.state = "busy"
        self._sel.unregister(conn.sock)
        self._pool.submit(self._work, conn, req)

    def _read_head(self, conn: _Conn) -> bool:
        req = parse_head(conn.inbuf, self.options.max_header_bytes, self.options.max_body_bytes)
        if req is None:
            return False
        conn.req, conn.close_after, conn.head = req, req.closes, req.method == "HEAD"
        conn.state = "body"
        if req.expects_continue and not conn.inbuf:
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        return True

    def _read_body(self, conn: _Conn) -> bool:
        req = conn.req
        assert req is not None
        done = parse_body(req, conn.inbuf, self.options.max_body_bytes, self.options.max_header_bytes)
        expected = max(req.length or 0, len(req.body))
        conn.deadline = req.body_start + self.options.read_timeout_s + expected / _MIN_RATE
        return done

    def _start_write(self, conn: _Conn, data: bytes, close: bool) -> None:
        conn.outbuf, conn.close_after = data, conn.close_after or close
        conn.state = "write"
        conn.deadline = time.monotonic() + self.options.read_timeout_s
        try:
            self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        except KeyError:
            self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.outbuf = conn.outbuf[sent:]
        conn.deadline = time.monotonic() + self.options.read_timeout_s
        if conn.outbuf:
            return
        if conn.close_after:
            self._close(conn)
            return
        conn.state, conn.req = "head", None
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbuf:  # a pipelined request
            self._advance(conn)

    # -- the workers -----------------------------------------------------------------------
    def _work(self, conn: _Conn, req: Request) -> None:
        try:
            body = bytes(req.body)
            if "gzip" in req.headers.get("content-encoding", "").lower():
                body = self._gunzip(body)
            status, ctype, payload = self.app(req.method, req.target, req.headers, body)
        except HttpError as exc:
            status, ctype, payload = exc.status, "application/json", json_bytes({"error": exc.message})
        except Exception:  # noqa: BLE001 - a worker never dies on a request
            logger.exception("REST request %s %s failed", req.method, req.target)
            status, ctype, payload = 500, "application/json", json_bytes({"error": "Internal error"})
        data = response(status, payload, content_type=ctype, close=conn.close_after, head=conn.head,
                        headers=self.headers)
        self._done.put((conn, data, conn.close_after))
        self._wake()

    def _gunzip(self, body: bytes) -> bytes:
        d = zlib.decompressobj(wbits=47)  # gzip or zlib
        try:
            out = d.decompress(body, self.options.max_body_bytes + 1)
        except zlib.error as exc:
            raise HttpError(400, f"Cannot decompress the request body: {exc}") from exc
        if len(out) > self.options.max_body_bytes:
            raise HttpError(
                413,
                f"Decompressed request body is larger than the limit of {self.options.max_body_bytes} bytes",
            )
        return out

