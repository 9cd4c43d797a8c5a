"""The KServe predictor as the tests start it: ``python -m yellowstone.plugins.kserve`` on free
ports, the fast test flags, and a V1+V2 REST call. A module of its own (not ``conftest``) so that
helpers importing it late, inside a fixture, get this one and not another directory's conftest."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAST = ["--backends", "onnxruntime,openvino", "--time_budget_s", "0.05",
        "--validation_rounds", "1", "--enable_latency_logging", "false"]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    """A running ModelServer subprocess."""

    name: str
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(name: str, model_dir: Path, log_dir: Path, *extra: str,
                 cache_dir: Path | None = None, timeout_s: float = 240.0) -> Server:
    """Start the predictor and wait until the model reports ready (or the process dies)."""
    import requests

    http_port, grpc_port = free_port(), free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    log = log_dir / f"{name}-server.log"
    env = dict(os.environ, YELLOWSTONE_CACHE_DIR=str(cache_dir or log_dir / "ys-cache"),
               PYTHONUNBUFFERED="1")
    env.pop("YELLOWSTONE_BACKEND", None)
    cmd = [sys.executable, "-m", "yellowstone.plugins.kserve", "--model_name", name,
           "--model_dir", str(model_dir), "--http_port", str(http_port),
           "--grpc_port", str(grpc_port), *extra]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    server = Server(name, proc, http_port, grpc_port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
        try:
            if requests.get(f"{server.base_url}/v2/models/{name}/ready", timeout=2).ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop_server(server)
    pytest.fail(f"server not ready after {timeout_s} s:\n{server.log_text()[-4000:]}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def infer_v1_and_v2(server: Server, input_name: str, x):
    """One FP32 tensor through KServe's REST clients, V1 (instances) and V2; both answers."""
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def go():
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            out1 = await v1.infer(server.base_url, {"instances": x.tolist()},
                                  model_name=server.name)
            inp = InferInput(input_name, list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out2 = await v2.infer(server.base_url, InferRequest(server.name, [inp]),
                                  model_name=server.name)
            return out1, out2
        finally:
            await v1.close(), await v2.close()

    return asyncio.run(go())
