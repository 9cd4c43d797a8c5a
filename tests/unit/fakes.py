"""A numpy model and fake backends for unit tests of the core's selection logic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from yellowstone.backends.base import Availability, CompileRequest
from yellowstone.errors import CompilationError
from yellowstone.model import ModelHandle
from yellowstone.spec import TensorSpec


class NumpyModel(ModelHandle):
    """y = relu(x @ w1) @ w2 and s = sum(x), a batched two-output model in plain numpy."""

    framework = "numpy"
    kind = "numpy"

    def __init__(self, seed: int = 0, features: int = 6):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w1 = rng.standard_normal((features, 5)).astype(np.float32)
        self.w2 = rng.standard_normal((5, 3)).astype(np.float32)
        self._name = "numpy-mlp"
        self.inputs = (TensorSpec(name="x", shape=(2, features), dtype="float32"),)
        self.native_calls = 0
        self._finish({"x": rng.standard_normal((2, features)).astype(np.float32)}, ["y", "s"])

    def _fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.w1.tobytes() + self.w2.tobytes()).hexdigest()

    def run(self, feeds):
        self.native_calls += 1
        time.sleep(0.001)  # the "framework" costs 1 ms a call, so compiled fakes can beat it
        x = feeds["x"]
        return [np.maximum(x @ self.w1, 0) @ self.w2, x.sum(axis=1, keepdims=True)]

    def call_native(self, *args, **kwargs):
        return self.run(self.feeds_from_call(args, kwargs))


class FakeCompiled:
    def __init__(self, model: NumpyModel, path: Path, offset: float, delay: float,
                 batch: int | None, fail_at_run: list | None = None, noise: float = 0.0):
        data = np.load(path)
        self.w1, self.w2 = data["w1"], data["w2"]
        self.offset, self.delay, self.batch = offset, delay, batch
        self.fail_at_run = fail_at_run
        self.noise = noise
        self.threads = 0  # the request's thread count (set by FakeBackend._load)
        self.calls = 0

    def run(self, feeds):
        self.calls += 1
        if self.fail_at_run is not None and self.fail_at_run[0] > 0:
            self.fail_at_run[0] -= 1
            raise RuntimeError("device lost")
        x = feeds["x"]
        if self.batch is not None and x.shape[0] != self.batch:
            raise RuntimeError(f"compiled for batch {self.batch}, got {x.shape[0]}")
        if self.delay:
            time.sleep(self.delay)
        outs = [np.maximum(x @ self.w1, 0) @ self.w2 + self.offset,
                x.sum(axis=1, keepdims=True) + self.offset]
        if self.noise:  # relative error, like a reduced-precision kernel
            rng = np.random.default_rng(self.calls)
            outs = [o * (1 + self.noise * rng.standard_normal(o.shape)).astype(o.dtype) for o in outs]
        return outs


class FakeBackend:
    """Configurable fake: delay per call, output offset (to fail validation), compile or load
    failure, the precisions it serves, and the tag that leaves it out of ``auto``."""

    cacheable = True

    def __init__(self, name: str, *, delay: float = 0.0, offset: float = 0.0,
                 fail_compile: bool = False, available: bool = True, dynamic_batch: bool = True,
                 compile_log: Path | None = None, compile_sleep: float = 0.0,
                 precisions: tuple[str, ...] = ("fp32",), noise: float = 0.0,
                 auto_excluded: str = "", fail_load: BaseException | None = None):
        self.name, self.delay, self.offset = name, delay, offset
        self.auto_excluded = auto_excluded
        self.fail_load = fail_load  # raised by load() (a cached artifact that does not load)
        self.fail_compile, self.available = fail_compile, available
        self.dynamic_batch = dynamic_batch
        self.compile_log = compile_log
        self.compile_sleep = compile_sleep
        self.precisions, self.noise = precisions, noise
        self.calibrations: list[tuple] = []  # (samples, batch) of every compile's calibration set
        self.compiles = 0
        self.loads = 0
        self.fail_at_run: list | None = None

    def probe(self) -> Availability:
        return Availability(name=self.name, available=self.available, version="1.0",
                            reason="" if self.available else "fake: switched off")

    def version(self) -> str:
        return "1.0"

    def supports(self, model):
        return None

    def supports_precision(self, precision):
        return None if precision in self.precisions else f"fake: no {precision}"

    def compile(self, model, request: CompileRequest, workdir: Path):
        self.compiles += 1
        if request.calibration:
            self.calibrations.append((len(request.calibration),
                                      {k: v.shape for k, v in request.calibration[0].items()}))
        if self.compile_log is not None:
            with open(self.compile_log, "a") as fh:
                fh.write(f"{os.getpid()} {self.name} {request.batch}\n")
        if self.compile_sleep:
            time.sleep(self.compile_sleep)
        if self.fail_compile:
            raise CompilationError(f"{self.name}: unsupported operator FakeOp")
        np.savez(workdir / "weights.npz", w1=model.w1, w2=model.w2)
        return self._load(model, request, workdir)

    def load(self, model, request: CompileRequest, workdir: Path):
        self.loads += 1
        if self.fail_load is not None:
            raise self.fail_load
        return self._load(model, request, workdir)

    def _load(self, model, request, workdir):
        compiled = FakeCompiled(model, workdir / "weights.npz", self.offset, self.delay,
                                request.batch, self.fail_at_run, self.noise)
        compiled.threads = request.threads
        return compiled


class TorchServeMetricsCache:
    """TorchServe's metrics cache as the metrics bridge calls it: records every call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def add_counter(self, name, value, idx, dims):
        self.calls.append(("counter", name, value, {d.name: d.value for d in dims}))

    def add_time(self, name, value, idx, unit, dims):
        self.calls.append(("time", name, value, {d.name: d.value for d in dims}, unit))

    def add_metric(self, name, value, unit, idx, dims, kind):
        self.calls.append(("gauge", name, value, {d.name: d.value for d in dims}))


class TorchServeContext:
    """The part of TorchServe's context the metrics bridge uses."""

    def __init__(self):
        self.metrics = TorchServeMetricsCache()
