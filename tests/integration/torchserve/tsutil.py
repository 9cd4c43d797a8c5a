"""Helpers for the TorchServe integration tests: a real server on loopback ports, archives, HTTP."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent
ASSETS = Path(__file__).with_name("assets")
REPO = Path(__file__).resolve().parents[3]
BOOST_HANDLER = REPO / "plugins" / "torchserve" / "boost_handler.py"
FAST = {"backends": "onnxruntime,openvino", "time_budget_s": 0.05, "validation_rounds": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TorchServe:
    """One TorchServe process (foreground, own process group) with the model API on."""

    def __init__(self, root: Path, cache_dir: Path, extra_env: dict | None = None):
        self.root = root
        self.store = root / "store"
        self.logs = root / "logs"
        self.tmp = root / "tmp"
        for d in (self.store, self.logs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.ports = {k: free_port() for k in ("inference", "management", "metrics",
                                               "grpc_inference", "grpc_management")}
        self.inference = f"http://127.0.0.1:{self.ports['inference']}"
        self.management = f"http://127.0.0.1:{self.ports['management']}"
        self.metrics = f"http://127.0.0.1:{self.ports['metrics']}"
        cfg = root / "config.properties"
        cfg.write_text("\n".join([
            f"inference_address={self.inference}",
            f"management_address={self.management}",
            f"metrics_address={self.metrics}",
            # gRPC too: the defaults (7070/7071) collide with any other TorchServe on the host
            "grpc_inference_address=127.0.0.1",
            "grpc_management_address=127.0.0.1",
            f"grpc_inference_port={self.ports['grpc_inference']}",
            f"grpc_management_port={self.ports['grpc_management']}",
            "disable_token_authorization=true",
            "enable_model_api=true",
            "default_workers_per_model=1",
            "metrics_mode=prometheus",
            "model_metrics_auto_detect=true",
            "default_response_timeout=300",
            f"model_store={self.store}",
        ]) + "\n")
        env = dict(os.environ)
        env.update({"LOG_LOCATION": str(self.logs), "METRICS_LOCATION": str(self.logs),
                    "TMPDIR": str(self.tmp), "YELLOWSTONE_CACHE_DIR": str(cache_dir),
                    "PATH": f"{VENV_BIN}:{env.get('PATH', '')}"})
        env.pop("YELLOWSTONE_BACKEND", None)
        env.update(extra_env or {})
        self.out = open(root / "torchserve.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "torchserve"), "--start", "--ncs", "--foreground",
             "--ts-config", str(cfg), "--model-store", str(self.store)],
            cwd=root, env=env, stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torchserve exited early:\n{self.output()[-4000:]}")
            try:
                if requests.get(f"{self.inference}/ping", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"torchserve not ready after {timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        text = (self.root / "torchserve.out").read_text(errors="replace")
        log = self.logs / "model_log.log"
        if log.exists():
            text += log.read_text(errors="replace")
        return text

    def model_log(self) -> str:
        log = self.logs / "model_log.log"
        return log.read_text(errors="replace") if log.exists() else self.output()

    def register(self, mar: str, *, workers: int = 1, timeout: float = 300) -> None:
        name = mar.removesuffix(".mar")
        if requests.get(f"{self.management}/models/{name}", timeout=30).status_code == 200:
            return  # registered by an earlier test of this module
        r = requests.post(f"{self.management}/models",
                          params={"url": mar, "initial_workers": workers, "synchronous": "true"},
                          timeout=timeout)
        assert r.status_code == 200, f"register {mar}: {r.status_code} {r.text}\n" \
                                     f"{self.model_log()[-6000:]}"

    def unregister(self, name: str) -> None:
        requests.delete(f"{self.management}/models/{name}", timeout=60)

    def predict(self, name: str, body: bytes, timeout: float = 300) -> requests.Response:
        return requests.post(f"{self.inference}/predictions/{name}", data=body, timeout=timeout)

    def describe(self, name: str) -> list[dict]:
        """What each worker says serves it (the boost handler's describe)."""
        r = requests.get(f"{self.management}/models/{name}", params={"customized": "true"},
                         timeout=60)
        assert r.ok, r.text
        info = r.json()[0]
        meta = info.get("customizedMetadata")
        assert meta, f"no customizedMetadata: {info}"
        meta = json.loads(meta) if isinstance(meta, str) else meta
        return [meta["yellowstone"]] if "yellowstone" in meta else [meta]

    def scrape(self) -> str:
        return requests.get(f"{self.metrics}/metrics", timeout=30).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.out.close()


def write_config(path: Path, *, yellowstone: dict | None = None, **top) -> Path:
    import yaml

    data = dict(top)
    if yellowstone is not None:
        data["yellowstone"] = yellowstone
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def archive(store: Path, name: str, serialized: Path, handler: str, *,
            model_file: Path | None = None, extra: list[Path] = (), config: Path | None = None
            ) -> str:
    """torch-model-archiver, exactly as a user runs it; returns the .mar file name."""
    cmd = [str(VENV_BIN / "torch-model-archiver"), "--model-name", name, "--version", "1.0",
           "--serialized-file", str(serialized), "--handler", handler,
           "--export-path", str(store), "--force"]
    if model_file:
        cmd += ["--model-file", str(model_file)]
    if extra:
        cmd += ["--extra-files", ",".join(str(e) for e in extra)]
    if config:
        cmd += ["--config-file", str(config)]
    env = dict(os.environ, TMPDIR=str(store.parent / "tmp"))
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return f"{name}.mar"


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    """A random RGB image, not all one colour, encoded with PIL."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(48 + seed % 7, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def assert_same_topk(stock: dict, boosted: dict, atol: float = 1e-4) -> None:
    """ImageClassifier outputs: the same top-k labels, probabilities within ``atol``."""
    assert set(stock) == set(boosted), (stock, boosted)
    for label, p in stock.items():
        assert abs(p - boosted[label]) <= atol, (label, p, boosted[label])
