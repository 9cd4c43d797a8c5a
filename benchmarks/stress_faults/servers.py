"""The three real servers, started on loopback as the integration tests start them.

TorchServe runs the boost handler over the tests' ``tensor_handler.py`` on a TorchScript MLP
(``batchSize 4``, two workers), archived with ``tests/integration/torchserve/tsutil.archive``;
KServe runs ``python -m yellowstone.plugins.kserve`` on the same TorchScript file; TF Serving
runs ``python -m yellowstone.plugins.tfserving`` on the tests' small Keras SavedModel (the shim
forced on, Prometheus on through ``--monitoring_config_file``). Each has
its own cache directory, and every process gets the fault hook (``site/``) on ``PYTHONPATH``.

``python -m benchmarks.stress_faults.servers build SERVER OUT`` writes SERVER's model under OUT
with ``expected.npz``: fixed random inputs and the framework's own outputs for them (run in its
own process, so the harness imports neither torch nor TensorFlow for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from .hostile import ModelData

REPO = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "site"
TS_TESTS = REPO / "tests" / "integration" / "torchserve"
TFS_TESTS = REPO / "tests" / "integration" / "tfserving"
MODEL = "mlp"
# The tests' fast boost, with a longer time budget: a closer race against the framework on a
# loaded host is decided by more than a handful of timed calls.
FAST = {"backends": "onnxruntime,openvino", "time_budget_s": "0.3", "validation_rounds": "1"}
ROWS, FEATURES = 64, 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


def tree_rss_mib(pid: int) -> float | None:
    """RSS of ``pid`` and all its descendants, MiB (None when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


def server_env(cache_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment every server process gets: its cache, the fault hook, ``extra``."""
    env = dict(os.environ)
    env.pop("YELLOWSTONE_BACKEND", None)
    env.pop("YELLOWSTONE_BACKENDS", None)
    env.update({"YELLOWSTONE_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(
                    [str(SITE), str(REPO), *filter(None, [env.get("PYTHONPATH")])])})
    env.update(extra)
    return env


class Server:
    """One server under test. ``start``/``stop``/``kill``; where its clients connect."""

    name = ""
    protocols: tuple[str, ...] = ()

    def __init__(self, root: Path, model_dir: Path, cache_dir: Path, env: dict[str, str]):
        self.root, self.model_dir, self.cache_dir, self.env = root, model_dir, cache_dir, env
        self.root.mkdir(parents=True, exist_ok=True)
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.rest: tuple[str, int] = ("127.0.0.1", 0)
        self.grpc: str = ""

    # what every server does the same way
    def rss_mib(self) -> float | None:
        return tree_rss_mib(self.proc.pid) if self.proc and self.proc.poll() is None else None

    def model_data(self) -> ModelData:
        data = np.load(self.model_dir / "expected.npz")
        names = json.loads((self.model_dir / "names.json").read_text())
        return ModelData(name=MODEL, input_name=names["input"], output_name=names["output"],
                         x=data["x"], y=data["y"])

    def log_files(self) -> list[Path]:
        return sorted(self.root.glob("log-*.txt"))

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files())

    def log_mark(self) -> dict[Path, int]:
        """Where each log file ends now (for :meth:`log_since`)."""
        return {p: p.stat().st_size for p in self.log_files() if p.exists()}

    def log_since(self, mark: dict[Path, int]) -> str:
        """What the logs gained since ``mark`` (a file that shrank was rewritten: all of it)."""
        text = []
        for p in self.log_files():
            if not p.exists():
                continue
            data = p.read_bytes()
            start = mark.get(p, 0)
            text.append(data[start if start <= len(data) else 0:].decode(errors="replace"))
        return "".join(text)

    def _popen(self, cmd: list[str]) -> subprocess.Popen:
        self.starts += 1
        log = open(self.root / f"log-{self.starts:02d}.txt", "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    cwd=self.root, start_new_session=True)
        finally:
            log.close()

    def _wait(self, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_text()[-3000:]}")
            if ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n"
                           f"{self.log_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the server's process group; wait for every process of it (SIGKILL at 30 s)."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        except psutil.Error:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=30)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def kill(self, timeout: float = 300) -> dict[str, Any]:
        """kill -9 the (single-process) server, start it again on the same ports."""
        assert self.proc is not None
        pid = self.proc.pid
        t0 = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.start(timeout=timeout, same_ports=True)
        return {"killed": f"server pid {pid} (single process: kill -9 is a server restart)",
                "back_s": round(time.monotonic() - t0, 2)}

    def start(self, timeout: float = 300, same_ports: bool = False) -> float:
        raise NotImplementedError

    def scrape(self) -> str | None:
        """The Prometheus text of the server's metrics endpoint (None: it has none)."""
        return None

    def backend(self) -> str:
        return "?"


class KServe(Server):
    name, protocols = "kserve", ("kserve-rest", "kserve-grpc")

    def start(self, timeout: float = 300, same_ports: bool = False) -> float:
        if not same_ports or not self.rest[1]:
            self.rest = ("127.0.0.1", free_port())
            self.grpc = f"127.0.0.1:{free_port()}"
        t0 = time.monotonic()
        flags = [a for k, v in FAST.items() for a in (f"--{k}", v)]
        self.proc = self._popen([
            sys.executable, "-m", "yellowstone.plugins.kserve", "--model_name", MODEL,
            "--model_dir", str(self.model_dir / "models"), "--http_port", str(self.rest[1]),
            "--grpc_port", self.grpc.rsplit(":", 1)[1], "--enable_latency_logging", "false",
            "--input", f"x:-1x{FEATURES}:float32", *flags])
        url = f"http://127.0.0.1:{self.rest[1]}/v2/models/{MODEL}/ready"
        self._wait(lambda: http_get(url, 2)[0] == 200, timeout)
        self._names()
        return time.monotonic() - t0

    def _names(self) -> None:
        path = self.model_dir / "names.json"
        if path.exists():
            return
        status, body = http_get(f"http://127.0.0.1:{self.rest[1]}/v2/models/{MODEL}")
        meta = json.loads(body) if status == 200 else {}
        path.write_text(json.dumps({"input": meta["inputs"][0]["name"],
                                    "output": meta["outputs"][0]["name"]}))

    def scrape(self) -> str | None:
        status, body = http_get(f"http://127.0.0.1:{self.rest[1]}/metrics")
        return body.decode(errors="replace") if status == 200 else None

    def backend(self) -> str:
        found = [line.split("ready on ", 1)[1].split()[0] for line in self.log_text().splitlines()
                 if f"{MODEL}: ready on " in line]
        return found[-1] if found else "?"


class TfServing(Server):
    name, protocols = "tfserving", ("tfserving-rest", "tfserving-grpc")

    def start(self, timeout: float = 300, same_ports: bool = False) -> float:
        if not same_ports or not self.rest[1]:
            self.rest = ("127.0.0.1", free_port())
            self.grpc = f"127.0.0.1:{free_port()}"
        ready = self.root / "ready"
        ready.unlink(missing_ok=True)
        t0 = time.monotonic()
        flags = [f"--{k}={v}" for k, v in FAST.items()]
        self.proc = self._popen([
            sys.executable, "-m", "yellowstone.plugins.tfserving",
            f"--port={self.grpc.rsplit(':', 1)[1]}", f"--rest_api_port={self.rest[1]}",
            f"--model_name={MODEL}", f"--model_base_path={self.model_dir / 'models'}",
            "--file_system_poll_wait_seconds=0.5", "--yellowstone_host=127.0.0.1",
            f"--yellowstone_ready_file={ready}", f"--monitoring_config_file={self._monitoring()}",
            # "always": the shim serves even where TensorFlow is as fast on this tiny model, so
            # there is a compiled call to fault (under "auto" the choice follows the host's load)
            "--yellowstone_shim=always", *flags])
        self._wait(ready.exists, timeout)
        return time.monotonic() - t0

    def _monitoring(self) -> Path:
        path = self.root / "monitoring.config"
        path.write_text(f'prometheus_config {{ enable: true, path: "{self.METRICS_PATH}" }}\n')
        return path

    METRICS_PATH = "/monitoring/prometheus/metrics"

    def scrape(self) -> str | None:
        status, body = http_get(f"http://127.0.0.1:{self.rest[1]}{self.METRICS_PATH}")
        return body.decode(errors="replace") if status == 200 else None

    def backend(self) -> str:
        text = self.log_text().rsplit("Running gRPC ModelServer", 1)[0]
        last = [line for line in text.splitlines() if "[serving_default]:" in line]
        shim = re.search(r"served by the shim \((\w+)", last[-1]) if last else None
        if shim:  # "served by the shim (<backend>, C) from ...": OpenVINO or ONNX Runtime
            return f"shim ({shim.group(1)})"
        return "tensorflow" if last else "?"


class TorchServe(Server):
    """TorchServe with the model API on, configured like ``tsutil.TorchServe`` plus gRPC ports.

    The tests' launcher leaves TorchServe's gRPC ports at their fixed defaults (7070/7071), which
    collide with any other TorchServe on the host, so this one writes its own
    config.properties; the archive is made with ``tsutil.archive`` as the tests make it.
    """

    name, protocols = "torchserve", ("torchserve-rest",)
    workers = 2

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.management = self.metrics = ""
        self.store = self.root / "store"

    @staticmethod
    def _tsutil() -> Any:
        if str(TS_TESTS) not in sys.path:
            sys.path.insert(0, str(TS_TESTS))
        import tsutil

        return tsutil

    def _archive(self) -> None:
        tsutil = self._tsutil()
        handler = TS_TESTS / "assets" / "tensor_handler.py"
        config = tsutil.write_config(
            self.root / "model-config.yaml", batchSize=4, maxBatchDelay=20,
            yellowstone={"handler": "tensor_handler.py", "input_shape": [1, FEATURES],
                         "backends": FAST["backends"], "time_budget_s": float(FAST["time_budget_s"]),
                         "validation_rounds": 1})
        tsutil.archive(self.store, MODEL, self.model_dir / "mlp.pt", str(tsutil.BOOST_HANDLER),
                       extra=[handler], config=config)

    def start(self, timeout: float = 300, same_ports: bool = False) -> float:
        t0 = time.monotonic()
        for d in (self.store, self.root / "logs", self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        if not (self.store / f"{MODEL}.mar").exists():
            self._archive()
        ports = [free_port() for _ in range(5)]
        self.rest = ("127.0.0.1", ports[0])
        self.management = f"http://127.0.0.1:{ports[1]}"
        self.metrics = f"http://127.0.0.1:{ports[2]}"
        (self.root / "tmp" / ".model_server.pid").unlink(missing_ok=True)  # a killed server's
        cfg = self.root / "config.properties"
        cfg.write_text("\n".join([
            f"inference_address=http://127.0.0.1:{ports[0]}",
            f"management_address={self.management}", f"metrics_address={self.metrics}",
            f"grpc_inference_port={ports[3]}", f"grpc_management_port={ports[4]}",
            "disable_token_authorization=true", "enable_model_api=true",
            f"default_workers_per_model={self.workers}", "metrics_mode=prometheus",
            "model_metrics_auto_detect=true", "default_response_timeout=120",
            f"model_store={self.store}"]) + "\n")
        self.env.update({"LOG_LOCATION": str(self.root / "logs"),
                         "METRICS_LOCATION": str(self.root / "logs"),
                         "TMPDIR": str(self.root / "tmp"),
                         "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
        self.proc = self._popen([str(Path(sys.executable).parent / "torchserve"), "--start",
                                 "--ncs", "--foreground", "--ts-config", str(cfg),
                                 "--model-store", str(self.store)])
        self._wait(lambda: http_get(f"http://127.0.0.1:{ports[0]}/ping", 2)[0] == 200, timeout)
        req = urllib.request.Request(
            f"{self.management}/models?url={MODEL}.mar&initial_workers={self.workers}"
            "&synchronous=true", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback
                r.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"registering {MODEL}: {exc.code} {exc.read()[:2000]!r}\n"
                               f"{self.log_text()[-3000:]}") from exc
        (self.model_dir / "names.json").write_text(json.dumps({"input": "row", "output": ""}))
        return time.monotonic() - t0

    def log_files(self) -> list[Path]:
        return [*super().log_files(), self.root / "logs" / "model_log.log"]

    def worker_pids(self) -> list[int]:
        import psutil

        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except (psutil.Error, AttributeError):
            return []
        pids = []
        for p in procs:
            try:
                if any("model_service_worker" in part for part in p.cmdline()):
                    pids.append(p.pid)
            except psutil.Error:
                pass
        return sorted(pids)

    def workers_ready(self) -> int:
        status, body = http_get(f"{self.management}/models/{MODEL}")
        if status != 200:
            return 0
        return sum(w.get("status") == "READY" for w in json.loads(body)[0].get("workers", []))

    def kill(self, timeout: float = 300) -> dict[str, Any]:
        """kill -9 one worker; TorchServe starts a new one. Time until all workers are READY."""
        pids = self.worker_pids()
        if not pids:
            return {"killed": "no worker process found", "back_s": None}
        t0 = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            now = set(self.worker_pids())
            if len(now) >= self.workers and pids[0] not in now and \
                    self.workers_ready() >= self.workers:
                return {"killed": f"worker pid {pids[0]} (of {len(pids)})",
                        "back_s": round(time.monotonic() - t0, 2)}
            time.sleep(0.25)
        return {"killed": f"worker pid {pids[0]}", "back_s": None}

    def scrape(self) -> str | None:
        status, body = http_get(f"{self.metrics}/metrics")
        return body.decode(errors="replace") if status == 200 else None

    def backend(self) -> str:
        status, body = http_get(f"{self.management}/models/{MODEL}?customized=true", 30)
        try:
            meta = json.loads(body)[0]["customizedMetadata"]
            meta = json.loads(meta) if isinstance(meta, str) else meta
            return str(meta.get("yellowstone", meta).get("backend"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return "?"


SERVERS: dict[str, type[Server]] = {"torchserve": TorchServe, "kserve": KServe,
                                    "tfserving": TfServing}


# -- models and their expected outputs (run as a subprocess) ---------------------------------
def _build_torch(out: Path, server: str) -> None:
    import torch

    torch.manual_seed(20261124)
    mlp = torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 4)).eval()
    x = np.random.default_rng(7).standard_normal((ROWS, FEATURES)).astype(np.float32)
    traced = torch.jit.trace(mlp, torch.from_numpy(x[:2]))
    path = out / ("mlp.pt" if server == "torchserve" else "models/model.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    with torch.inference_mode():
        y = torch.jit.load(str(path))(torch.from_numpy(x)).numpy()
    np.savez(out / "expected.npz", x=x, y=y)


def _build_keras(out: Path) -> None:
    sys.path.insert(0, str(TFS_TESTS))
    import tensorflow as tf
    import tfs_models

    version = out / "models" / "1"
    tfs_models.build_keras(str(version), seed=3)
    sig = tf.saved_model.load(str(version)).signatures["serving_default"]
    (name,) = sig.structured_input_signature[1]
    (out_name,) = sig.structured_outputs
    x = np.random.default_rng(7).standard_normal((ROWS, 8)).astype(np.float32)
    y = sig(**{name: tf.constant(x)})[out_name].numpy()
    np.savez(out / "expected.npz", x=x, y=y)
    (out / "names.json").write_text(json.dumps({"input": name, "output": out_name}))


def build(server: str, out: Path) -> None:
    """Write ``server``'s model and ``expected.npz`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if server == "tfserving":
        _build_keras(out)
    else:
        _build_torch(out, server)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "build":
        sys.exit("usage: python -m benchmarks.stress_faults.servers build SERVER OUT")
    build(sys.argv[2], Path(sys.argv[3]))
