"""The REST transport under resource pressure: few file descriptors, many large bodies at once.

The descriptor tests run the server in a subprocess with a low ``RLIMIT_NOFILE`` (so the limit
does not touch the test process); the client side, here, has descriptors to spare.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tensorflow]
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")
resource = pytest.importorskip("resource", reason="RLIMIT_NOFILE is a POSIX limit")

from yellowstone.errors import ConfigError  # noqa: E402
from yellowstone.plugins.tfserving.rest import HttpServer, RestOptions  # noqa: E402

FD_LIMIT = 200

# The server process: lower its descriptor limit, serve, and answer commands on stdin with one
# JSON line each: "hog" (open files until none is left), "free", "cpu" (CPU seconds so far).
SERVER = textwrap.dedent("""
    import json, logging, os, resource, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from yellowstone.plugins.tfserving.rest import HttpServer, RestOptions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))
    app = lambda method, target, headers, body: (200, "application/json", b'{"ok":1}')
    server = HttpServer(app, "127.0.0.1", 0, RestOptions(num_threads=2, read_timeout_s=60))
    print(json.dumps([server.server_address[1], server.max_connections]), flush=True)
    hogs = []
    for line in sys.stdin:
        if line.strip() == "hog":
            try:
                while True:
                    hogs.append(open(os.devnull, "rb"))
            except OSError:
                pass
            reply = len(hogs)
        elif line.strip() == "free":
            for f in hogs:
                f.close()
            reply, hogs = 0, []
        else:
            t = os.times()
            reply = t.user + t.system
        print(json.dumps(reply), flush=True)
    server.shutdown()
""")


class _Server:
    def __init__(self, tmp_path: Path):
        self.log = tmp_path / "rest-server.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(FD_LIMIT)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log_fh, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            pytest.fail(f"server did not start:\n{self.log.read_text()[-3000:]}")
        self.port, self.cap = json.loads(line)

    def ask(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def cpu_over(self, seconds: float) -> float:
        """CPU seconds the server process used while this thread slept ``seconds``."""
        before = self.ask("cpu")
        time.sleep(seconds)
        return self.ask("cpu") - before

    def accept_lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "REST accept" in line]

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_fh.close()


@pytest.fixture
def low_fd_server(tmp_path):
    server = _Server(tmp_path)
    yield server
    server.stop()


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _flood(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]


def test_connections_are_capped_below_the_descriptor_limit(low_fd_server):
    server = low_fd_server
    assert 1 <= server.cap < FD_LIMIT
    flood = _flood(server.port, 2 * FD_LIMIT)
    try:
        assert server.cpu_over(2.0) < 0.5  # the I/O thread waits: it does not spin on accept
        assert server.accept_lines() == []  # the cap kept accept from running out
    finally:
        for s in flood:
            s.close()
    assert _get(server.port).startswith(b"HTTP/1.1 200 ")
    assert "REST connections capped at" in server.log.read_text()


def test_accept_out_of_descriptors_rests_instead_of_spinning(low_fd_server):
    server = low_fd_server
    assert server.ask("hog") > 0  # the process has no descriptor left
    flood = _flood(server.port, 50)  # handshakes done by the kernel; accept gets EMFILE
    try:
        assert server.cpu_over(2.0) < 0.5
        lines = server.accept_lines()
        assert 1 <= len(lines) <= 2, lines
        assert "Too many open files" in lines[0]
        assert server.ask("free") == 0
    finally:
        for s in flood:
            s.close()
    assert _get(server.port).startswith(b"HTTP/1.1 200 ")
    assert len(server.accept_lines()) <= 2  # the failure, and "accepting again"


# -- the body budget -----------------------------------------------------------------------
MIB = 1 << 20


def _echo_size(method, target, headers, body):
    return 200, "application/json", json.dumps({"size": len(body)}).encode()


@pytest.fixture
def budget_server():
    server = HttpServer(_echo_size, "127.0.0.1", 0,
                        RestOptions(num_threads=2, read_timeout_s=30, max_body_bytes=MIB,
                                    max_buffered_bytes=2 * MIB))
    yield server
    server.shutdown()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def _started(port: int, length: int) -> socket.socket:
    """A POST whose head is accepted (``100 Continue``: its body is counted) and body not sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST /b HTTP/1.1\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
              .encode())
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    return s


def test_bodies_beyond_the_buffer_budget_are_refused_with_503(budget_server):
    port = budget_server.server_address[1]
    first, second = _started(port, MIB), _started(port, MIB // 2)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as third:
        third.sendall(f"POST /b HTTP/1.1\r\nContent-Length: {MIB}\r\n\r\n".encode())
        status, body = _answer(third)
        assert status == 503 and "retry" in json.loads(body)["error"]
        assert third.recv(1) == b""  # and closed
    with socket.create_connection(("127.0.0.1", port), timeout=30) as chunked:  # grows past it
        piece = b"x" * (MIB // 2 + 1)
        chunked.sendall(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + f"{len(piece):x}\r\n".encode() + piece)  # refused at its last byte
        assert _answer(chunked)[0] == 503
    payload = b"y" * MIB
    first.sendall(payload)
    assert _answer(first) == (200, json.dumps({"size": MIB}).encode())
    # the answered body no longer counts: a new one of the full size fits beside the second
    with socket.create_connection(("127.0.0.1", port), timeout=30) as fourth:
        fourth.sendall(f"POST /b HTTP/1.1\r\nContent-Length: {MIB}\r\n\r\n".encode() + payload)
        assert _answer(fourth)[0] == 200
    second.sendall(b"z" * (MIB // 2))
    assert _answer(second)[0] == 200
    first.close()
    second.close()


def test_buffer_budget_option():
    assert RestOptions(max_body_bytes=MIB).buffer_budget == 4 * MIB
    assert RestOptions(max_body_bytes=MIB, max_buffered_bytes=3 * MIB).buffer_budget == 3 * MIB
    with pytest.raises(ConfigError):
        RestOptions(max_body_bytes=2 * MIB, max_buffered_bytes=MIB)
