"""The drop-in TF Serving server for the integration tests: build models, start, talk to it, stop.

:class:`TFServer` runs ``python -m yellowstone.plugins.tfserving`` with the given flags on free
loopback ports (``--port`` and, unless ``rest=False``, ``--rest_api_port``), the core's cache in
``root/cache`` and its log in ``root/server.log``, and waits for its ready file; as a context
manager it stops the server (and closes its gRPC channel) on exit. The rest are the small pieces
every module repeated: the model builder subprocess, a ``model_config_file``'s text, a
PredictRequest and a gRPC Predict call.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def importorskip_client():
    """``(tensorflow, grpc, requests)``; skips the module where one (or tensorflow-serving-api) is missing."""
    tf = pytest.importorskip(
        "tensorflow", reason="tensorflow is not installed (pip install 'yellowstone[tfserving]')"
    )
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")
    return tf, grpc, pytest.importorskip("requests")


def run_python(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python ARGV`` with TensorFlow's logging quiet; an error if it fails."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *argv], check=True, env=env, capture_output=True, timeout=timeout)


def build_model(kind: str, path: Path, *args: object, script: str = "tfs_models.py") -> None:
    """Write model ``kind`` of ``script`` (``tfs_models.py`` or ``tf1_models.py``) at ``path``."""
    run_python(str(HERE / script), kind, str(path), *map(str, args))


def model_config(*models: tuple[str, object]) -> str:
    """A ``--model_config_file`` text serving each ``(name, base_path)`` on TensorFlow."""
    entries = "".join(f'  config {{ name: "{n}" base_path: "{p}" model_platform: "tensorflow" }}\n'
                      for n, p in models)
    return "model_config_list {\n" + entries + "}\n"


class TFServer:
    """A running ``python -m yellowstone.plugins.tfserving`` (see the module docstring)."""

    def __init__(self, root: Path, *flags: str, rest: bool = True, env: dict[str, str] | None = None,
                 unset: tuple[str, ...] = ("YELLOWSTONE_BACKEND",), timeout_s: float = 240):
        self.root = Path(root)
        self.flags = flags
        self.env = dict(env or {})
        self.unset = unset
        self.timeout_s = timeout_s
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else None
        while self.rest_port == self.grpc_port:
            self.rest_port = free_port()
        self.log = self.root / "server.log"
        self.ready = self.root / "ready"
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._channel = None

    @property
    def target(self) -> str:
        """The gRPC address over TCP."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def rest(self) -> str:
        """The REST base URL."""
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def channel(self):
        """One plaintext gRPC channel to :attr:`target`, closed by :meth:`stop`."""
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def stubs(self):
        """``(PredictionServiceStub, ModelServiceStub)`` over :attr:`channel`."""
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        return (prediction_service_pb2_grpc.PredictionServiceStub(self.channel),
                model_service_pb2_grpc.ModelServiceStub(self.channel))

    def log_text(self) -> str:
        return self.log.read_text()

    def start(self) -> TFServer:
        """Start the server and wait for its ready file; fail the test (log tail shown) if it never comes."""
        env = dict(os.environ, YELLOWSTONE_CACHE_DIR=str(self.root / "cache"), TF_CPP_MIN_LOG_LEVEL="2",
                   **self.env)
        for var in self.unset:
            env.pop(var, None)
        argv = [sys.executable, "-m", "yellowstone.plugins.tfserving", f"--port={self.grpc_port}"]
        if self.rest_port is not None:
            argv.append(f"--rest_api_port={self.rest_port}")
        argv += [*self.flags, f"--yellowstone_host={LOOPBACK}", f"--yellowstone_ready_file={self.ready}"]
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + self.timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                self.stop()
                pytest.fail("server did not start:\n" + self.log_text()[-3000:])
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> TFServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def predict_request(name, feeds, signature="", version=None, output_filter=()):
    """A PredictRequest for model ``name`` with ``feeds`` as TensorProtos."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if signature:
        req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    for k, v in feeds.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    req.output_filter.extend(output_filter)
    return req


def predict(channel, name, feeds, signature="", version=None, timeout: float = 120) -> dict:
    """One gRPC Predict over ``channel``; the outputs as numpy arrays."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    req = predict_request(name, feeds, signature, version)
    resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=timeout)
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
