"""The ``onnxruntime`` backend: ONNX Runtime with full graph optimisation (CPU, CUDA, TensorRT EPs)."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, CompilationError, missing_extra
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle

_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


class OrtCompiled:
    """An ``InferenceSession``; ``run`` is thread-safe in ONNX Runtime."""

    def __init__(self, session: Any, input_names: list[str]):
        self.session = session
        self._inputs = input_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session."""
        return self.session.run(None, {n: feeds[n] for n in self._inputs})


class OnnxRuntimeBackend:
    """ONNX Runtime; reads ONNX, so torch and TF models go through a conversion path first."""

    name = "onnxruntime"
    dynamic_batch = True
    cacheable = True

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Available when ``onnxruntime`` (any of its distributions) imports."""
        if not module_available("onnxruntime"):
            return Availability(name=self.name, available=False,
                                reason="not installed: pip install 'yellowstone[onnxruntime]'")
        import onnxruntime as ort

        providers = ort.get_available_providers()
        devices = tuple(p.removesuffix("ExecutionProvider").lower() for p in providers
                        if p != "AzureExecutionProvider")
        return Availability(name=self.name, available=True, version=self.version(),
                            devices=devices)

    def version(self) -> str:
        """Installed ONNX Runtime version."""
        return distribution_version(*_DISTS) or "?"

    def supports(self, model: ModelHandle) -> str | None:
        """ONNX Runtime takes fp32 models of any framework that converts to ONNX."""
        return None

    def _check_precision(self, precision: str) -> None:
        if precision != "fp32":
            raise CompilationError(
                f"onnxruntime serves fp32 only here; {precision} needs a converted model "
                "(use openvino for bf16 on CPU)")

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Convert to ONNX (if needed), keep the file in ``workdir``, open a session on it."""
        self._check_precision(request.precision)
        src = model.onnx_path(dynamic_batch=request.batch is None)
        shutil.copyfile(src, workdir / "model.onnx")
        data = src.with_name(src.name + ".data")
        if data.exists():  # external weights written by the exporter for large models
            shutil.copyfile(data, workdir / data.name)
        return self.load(model, request, workdir)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Open a session on ``workdir/model.onnx``."""
        if not module_available("onnxruntime"):
            raise missing_extra("onnxruntime", "onnxruntime")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if request.threads:
            opts.intra_op_num_threads = request.threads
        if request.shared:  # other workers run on these cores: idle threads sleep, not spin
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        for key, value in dict(request.options.get("session_config", {})).items():
            opts.add_session_config_entry(key, str(value))
        providers = list(request.options.get("providers") or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailableError(f"onnxruntime providers not available: {missing}")
        try:
            session = ort.InferenceSession(str(workdir / "model.onnx"), opts, providers=providers)
        except Exception as exc:
            raise CompilationError(f"onnxruntime could not load the model: {exc}") from exc
        return OrtCompiled(session, [s.name for s in model.inputs])
