"""The REST transport: a bounded HTTP/1.1 server (a selector thread for I/O, a fixed worker pool, limits)."""

from __future__ import annotations

import dataclasses
import errno
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
            TF Serving's default, counting the cores the affinity mask and cgroup quota allow).
        read_timeout_s: how long a connection may take to send a request's headers (and stay
            idle between requests), and, with 1 s per MiB on top, its body.
        max_body_bytes: larger bodies are refused with 413.
        max_header_bytes: a longer request line and headers are refused with 431.
        max_connections: connections beyond this are closed on accept (the server lowers it to
            what the process's file descriptor limit allows).
        max_buffered_bytes: request bodies buffered at once, over all connections (0:
            ``4 * max_body_bytes``); a body that would go beyond is refused with 503. TF Serving
            has no such flag (its HTTP server buffers without a global bound), so this stays an
            internal limit: it only keeps 1024 slow 256 MiB uploads from holding 256 GiB.
    """

    num_threads: int = 0
    read_timeout_s: float = 30.0
    max_body_bytes: int = 256 << 20
    max_header_bytes: int = 64 << 10
    max_connections: int = 1024
    max_buffered_bytes: int = 0

    def __post_init__(self) -> None:
        from yellowstone.errors import ConfigError

        if (
            self.num_threads < 0
            or self.read_timeout_s <= 0
            or self.max_body_bytes <= 0
            or self.max_header_bytes < 1024
            or self.max_connections < 1
            or 0 < self.max_buffered_bytes < self.max_body_bytes
        ):
            raise ConfigError(f"invalid REST options: {self}")

    @property
    def threads(self) -> int:
        """The worker count in effect."""
        if self.num_threads:
            return self.num_threads
        from yellowstone.serving import host_cores

        return 4 * max(1, host_cores())  # a pod's CPU limit, not the node's cores

    @property
    def buffer_budget(self) -> int:
        """The body bytes buffered at once in effect."""
        return self.max_buffered_bytes or 4 * self.max_body_bytes

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
    __slots__ = ("sock", "inbuf", "outbuf", "state", "deadline", "req", "close_after", "head", "held")

    def __init__(self, sock: socket.socket, now: float, timeout: float):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.state = "head"  # head -> body -> busy -> write -> head ...
        self.deadline = now + timeout
        self.req: Request | None = None
        self.close_after = False
        self.head = False
        self.held = 0  # body bytes counted against the server's buffer budget


_MIN_RATE = 1 << 20  # bytes per second a body may take beyond the read timeout
_FD_HEADROOM = 64  # descriptors kept for all but REST connections (gRPC, model files, logs)
_ACCEPT_PAUSE_S = 0.1  # how long the listener is left alone after accept ran out of resources
_REFUSAL_LOG_S = 60.0  # at most one WARNING this often about bodies refused for the budget
# accept() failing for the peer's sake (it left before we took it): take the next one
_PEER_GONE = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


def connection_cap(max_connections: int) -> int:
    """``max_connections`` lowered so that REST connections cannot exhaust the descriptor limit.

    The soft ``RLIMIT_NOFILE`` less the descriptors open now, less :data:`_FD_HEADROOM` for what
    the rest of the server opens later; never below 1.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return max_connections
    if soft == resource.RLIM_INFINITY:
        return max_connections
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 0
    return max(1, min(max_connections, soft - in_use - _FD_HEADROOM))


class HttpServer:
    """HTTP/1.1 with keep-alive: a selector thread for I/O, a fixed worker pool for answers.

    Idle or slow clients hold a socket, never a thread: workers get complete requests only, and
    malformed framing (a bad ``Content-Length``, oversized headers or bodies) is refused first.
    Connections stay within the file descriptor limit (:func:`connection_cap`); should accept run
    out of descriptors all the same, the listener rests 100 ms rather than the thread spinning.

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
        self.max_connections = connection_cap(options.max_connections)
        if self.max_connections < options.max_connections:
            logger.info("REST connections capped at %d (of %d): the open file limit is too low "
                        "for more", self.max_connections, options.max_connections)
        self._budget, self._buffered = options.buffer_budget, 0
        self._refused, self._next_refusal_log = 0, 0.0
        self._accept_resume: float | None = None  # listener unwatched until then
        self._paused_since: float | None = None  # accept has failed since then
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
                if self._accept_resume is not None:
                    waits.append(self._accept_resume)
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
                now = time.monotonic()
                if self._accept_resume is not None and now >= self._accept_resume:
                    self._accept_resume = None
                    self._sel.register(self._listener, selectors.EVENT_READ, "accept")
                self._expire(now)
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
            except OSError as exc:
                if exc.errno in _PEER_GONE:
                    continue
                self._pause_accept(exc)
                return
            if self._paused_since is not None:
                logger.info("REST accepting connections again after %.1f s",
                            time.monotonic() - self._paused_since)
                self._paused_since = None
            if len(self._conns) >= self.max_connections:
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, time.monotonic(), self.options.read_timeout_s)
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _pause_accept(self, exc: OSError) -> None:
        """Out of descriptors (or memory): the listener stays readable, so stop watching it a while.

        New connections wait in the backlog meanwhile; one WARNING per episode, which ends at the
        next connection accepted.
        """
        now = time.monotonic()
        if self._paused_since is None:
            self._paused_since = now
            logger.warning("REST accept failed: %s; new connections wait until descriptors are "
                           "free (%d REST connections open)", exc, len(self._conns))
        self._sel.unregister(self._listener)
        self._accept_resume = now + _ACCEPT_PAUSE_S

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
        self._release(conn)
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
        self._hold(conn, req.length or 0)
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
        self._hold(conn, expected)  # a chunked body grows as it comes
        conn.deadline = req.body_start + self.options.read_timeout_s + expected / _MIN_RATE
        return done

    def _hold(self, conn: _Conn, size: int) -> None:
        """Count ``size`` body bytes for ``conn`` against the budget; 503 when they do not fit."""
        grow = size - conn.held
        if grow <= 0:
            return
        if self._buffered + grow > self._budget:
            self._refused += 1
            now = time.monotonic()
            if now >= self._next_refusal_log:
                self._next_refusal_log = now + _REFUSAL_LOG_S
                logger.warning("REST request bodies refused with 503: %d buffered bytes would "
                               "exceed the budget of %d (%d refused so far)",
                               self._buffered + grow, self._budget, self._refused)
            raise HttpError(503, "The server is buffering too many request bodies; retry later")
        conn.held += grow
        self._buffered += grow

    def _release(self, conn: _Conn) -> None:
        self._buffered -= conn.held
        conn.held = 0

    def _start_write(self, conn: _Conn, data: bytes, close: bool) -> None:
        self._release(conn)  # the answer is made: its request's body is no longer needed
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

