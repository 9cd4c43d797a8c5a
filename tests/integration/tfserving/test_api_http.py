"""The REST transport on its own: HTTP/1.1 framing, limits and timeouts, with a stand-in application.

The server runs in process on a free loopback port; the application echoes what it was given,
so no model is loaded (the module still imports the plugin, hence TensorFlow Serving's protos).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time

import pytest

pytestmark = [pytest.mark.tensorflow]
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")

from yellowstone.plugins.tfserving.rest import HttpServer, RestOptions  # noqa: E402

TIMEOUT_S = 0.5


def _echo(method, target, headers, body):
    if target == "/slow":
        time.sleep(0.3)
    payload = {"method": method, "target": target, "size": len(body), "sum": sum(body) % 65521}
    return 200, "application/json", json.dumps(payload).encode()


@pytest.fixture(scope="module")
def http():
    server = HttpServer(
        _echo,
        "127.0.0.1",
        0,
        RestOptions(num_threads=2, read_timeout_s=TIMEOUT_S, max_body_bytes=1 << 20, max_connections=64),
    )
    yield server
    server.shutdown()


def _connect(http) -> socket.socket:
    return socket.create_connection(("127.0.0.1", http.server_address[1]), timeout=10)


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict, bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buf)!r}")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    del buf[:]
    buf += rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def _closed(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _request(http, data: bytes) -> tuple[int, dict, bytes]:
    with _connect(http) as s:
        s.sendall(data)
        return _read_response(s, bytearray())


def test_keep_alive_and_pipelining(http):
    body = bytes(range(200))
    one = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + body
    with _connect(http) as s:
        s.sendall(one + one.replace(b"/a", b"/b"))  # two requests in one packet
        buf = bytearray()
        first, second = _read_response(s, buf), _read_response(s, buf)
        assert [json.loads(r[2])["target"] for r in (first, second)] == ["/a", "/b"]
        assert json.loads(first[2])["sum"] == sum(body) % 65521
        s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection, later
        assert json.loads(_read_response(s, buf)[2])["target"] == "/c"


def test_chunked_gzip_head_and_connection_close(http):
    status, _, body = _request(
        http, b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert status == 200 and json.loads(body)["size"] == 5
    status, headers, body = _request(http, b"HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert headers["connection"] == "close"
    with _connect(http) as s:
        s.sendall(b"GET /x HTTP/1.0\r\n\r\n")  # HTTP/1.0 without keep-alive: closed after the answer
        assert _read_response(s, bytearray())[0] == 200
        assert _closed(s, 5)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n", 413),
        (b"GET /a HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /a HTTP/2.0\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    ],
)
def test_bad_framing_is_refused_and_closed(http, head, status):
    with _connect(http) as s:
        s.sendall(head)
        got, headers, body = _read_response(s, bytearray())
        assert got == status, body
        assert headers["connection"] == "close" and "error" in json.loads(body)
        assert _closed(s, 5)


def test_gzip_bodies_are_inflated_within_the_limit(http):
    payload = bytes(range(256)) * 10
    data = gzip.compress(payload)
    status, _, body = _request(
        http, b"POST /z HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(data) + data
    )
    assert status == 200 and json.loads(body)["size"] == len(payload)
    bomb = gzip.compress(b"\0" * (2 << 20))  # inflates past max_body_bytes
    status, _, _ = _request(
        http, b"POST /z HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb
    )
    assert status == 413


def test_expect_100_continue(http):
    with _connect(http) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"abcd")
        assert json.loads(_read_response(s, bytearray())[2])["size"] == 4


def test_slow_clients_hold_no_worker_and_are_timed_out(http):
    idle = [_connect(http) for _ in range(20)]
    for i, s in enumerate(idle):
        if i % 2:
            s.sendall(b"POST /a HTT")  # half a request line
        else:
            s.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")  # half a body
    results = []

    def answer():
        results.append(_request(http, b"GET /slow HTTP/1.1\r\n\r\n")[0])

    workers = [threading.Thread(target=answer) for _ in range(4)]  # more requests than workers
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert results == [200] * 4
    assert all(_closed(s, TIMEOUT_S + 10) for s in idle)
    for s in idle:
        s.close()
    deadline = time.monotonic() + 10
    while http.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.open_connections == 0


def test_connections_beyond_the_limit_are_closed(http):
    held = [_connect(http) for _ in range(64)]
    try:
        deadline = time.monotonic() + 10
        while http.open_connections < 64 and time.monotonic() < deadline:
            time.sleep(0.05)
        extra = _connect(http)
        assert _closed(extra, 5)
        extra.close()
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10  # the server sees the closes on its I/O thread, then has room
    while http.open_connections >= 64 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _request(http, b"GET /ok HTTP/1.1\r\n\r\n")[0] == 200


def test_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("YELLOWSTONE_TFSERVING_REST_READ_TIMEOUT_S", "7.5")
    monkeypatch.setenv("YELLOWSTONE_TFSERVING_REST_THREADS", "3")
    opts = RestOptions.from_env(num_threads=5)
    assert (opts.read_timeout_s, opts.num_threads, opts.threads) == (7.5, 5, 5)
    assert RestOptions().threads >= 4
    from yellowstone.errors import ConfigError

    with pytest.raises(ConfigError):
        RestOptions(read_timeout_s=0)
