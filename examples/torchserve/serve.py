"""Start and stop a TorchServe instance on free loopback ports (used by the example and bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``torchserve --foreground`` in its own process group, logs under ``root/logs``."""

    def __init__(self, root: Path, store: Path, models: str, env: dict | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        ports = [free_port() for _ in range(5)]
        self.url = f"http://127.0.0.1:{ports[0]}"
        self.management = f"http://127.0.0.1:{ports[1]}"
        self.metrics = f"http://127.0.0.1:{ports[2]}"
        cfg = root / "config.properties"
        cfg.write_text(f"inference_address={self.url}\nmanagement_address={self.management}\n"
                       f"metrics_address={self.metrics}\n"
                       # gRPC's defaults (7070/7071) collide with any other TorchServe here
                       "grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
                       f"grpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
                       "disable_token_authorization=true\n"
                       "metrics_mode=prometheus\nmodel_metrics_auto_detect=true\n"
                       "default_response_timeout=600\n")
        full_env = dict(os.environ, LOG_LOCATION=str(root / "logs"),
                        METRICS_LOCATION=str(root / "logs"), TMPDIR=str(root / "tmp"),
                        PATH=f"{BIN}:{os.environ.get('PATH', '')}", **(env or {}))
        self.log = open(root / "torchserve.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "torchserve"), "--start", "--ncs", "--foreground", "--ts-config", str(cfg),
             "--model-store", str(store), "--models", models],
            env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_model(self, name: str, timeout: float = 600) -> None:
        """Wait until ``name`` has a READY worker."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("torchserve exited; see its logs")
            log = self.root / "logs" / "model_log.log"
            if log.exists() and f"Failed to load model {name}" in log.read_text(errors="replace"):
                raise RuntimeError(f"model {name} failed to load; see {log}")
            try:
                r = requests.get(f"{self.management}/models/{name}", timeout=5)
                if r.ok and any(w["status"] == "READY" for w in r.json()[0]["workers"]):
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"model {name} not ready after {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
