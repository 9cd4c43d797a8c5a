"""The ``tensorrt`` backend: NVIDIA TensorRT engines built from ONNX, for NVIDIA GPUs only.

One optimisation profile covers the dynamic batch (1..``max_batch``) and every named dynamic
dim over its range (``seq=1..512``), optimised for the example's sizes.

Enabled only where ``tensorrt`` imports and an NVIDIA GPU with CUDA is visible. Device buffers
are torch CUDA tensors, so no extra CUDA Python binding is needed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, CompilationError
from ..hardware import detect
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle


class TrtCompiled:
    """A deserialised engine; one execution context per calling thread."""

    def __init__(self, engine: Any, input_names: list[str], output_names: list[str]):
        self._engine = engine
        self._inputs = input_names
        self._outputs = output_names
        self._tls = threading.local()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Copy feeds to the GPU, enqueue the engine, copy outputs back."""
        import tensorrt as trt
        import torch

        ctx = getattr(self._tls, "ctx", None)
        if ctx is None:
            ctx = self._tls.ctx = self._engine.create_execution_context()
        stream = torch.cuda.current_stream()
        keep = []
        for name in self._inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outs = []
        for name in self._outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            t = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device="cuda")
            ctx.set_tensor_address(name, t.data_ptr())
            outs.append(t)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return [t.cpu().numpy() for t in outs]


def _profile_shapes(model: ModelHandle, request: CompileRequest,
                    ) -> list[tuple[list[int], list[int], list[int]]]:
    """Per input, the optimisation profile's (min, opt, max) shapes.

    A dynamic batch spans 1..``max_batch`` (option, default 64) around 1; a named dim spans its
    range around the example's size.
    """
    max_batch = int(request.options.get("max_batch", 64))
    ranges, example = model.dim_ranges, model.example_dims
    out = []
    for spec in model.specs_for(request.batch):
        lo, opt, hi = [], [], []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int):
                bounds, best = (d, d), d
            elif i == 0 and model.batched:
                bounds, best = (1, max_batch), 1
            else:
                bounds = ranges.get(str(d), spec.range_of(str(d)) or (1, 1))
                best = min(max(example.get(str(d), bounds[0]), bounds[0]), bounds[1])
            lo.append(bounds[0])
            opt.append(best)
            hi.append(bounds[1])
        out.append((lo, opt, hi))
    return out


class TensorRtBackend:
    """NVIDIA TensorRT."""

    name = "tensorrt"
    dynamic_batch = True
    cacheable = True
    auto_excluded = ""

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Available only with the ``tensorrt`` package and an NVIDIA GPU."""
        gpus = [g for g in detect().gpus if g.vendor == "nvidia"]
        if not module_available("tensorrt"):
            return Availability(name=self.name, available=False,
                                reason="not installed: TensorRT needs an NVIDIA GPU and "
                                       "pip install 'yellowstone[tensorrt]'")
        if not gpus:
            return Availability(name=self.name, available=False, version=self.version(),
                                reason="no NVIDIA GPU found")
        return Availability(name=self.name, available=True, version=self.version(),
                            devices=tuple(f"cuda:{i}" for i in range(len(gpus))))

    def version(self) -> str:
        """Installed TensorRT version."""
        return distribution_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13") or "?"

    def supports_precision(self, precision: str) -> str | None:
        """fp32, fp16 and bf16 builder flags; int8 would need a TensorRT calibrator (not wired)."""
        return None if precision in ("fp32", "fp16", "bf16") else \
            "tensorrt int8 needs a calibrator, which is not wired"

    def supports(self, model: ModelHandle) -> str | None:
        """Any model that converts to ONNX."""
        return None

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Parse the ONNX model, build an engine (optimisation profile over the batch sizes)."""
        if not self.probe().available:
            raise BackendUnavailableError(self.probe().reason)
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        onnx_file = model.onnx_path(dynamic_batch=request.batch is None)
        if not parser.parse_from_file(str(onnx_file)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise CompilationError("TensorRT could not parse the ONNX model: " + "; ".join(errors))
        config = builder.create_builder_config()
        if request.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif request.precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        profile = builder.create_optimization_profile()
        for spec, (lo, opt, hi) in zip(model.specs_for(request.batch),
                                       _profile_shapes(model, request)):
            profile.set_shape(spec.name, lo, opt, hi)
        config.add_optimization_profile(profile)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise CompilationError("TensorRT failed to build the engine (see its log)")
        (workdir / "model.engine").write_bytes(bytes(engine))
        return self.load(model, request, workdir)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Deserialise ``model.engine``."""
        if not self.probe().available:
            raise BackendUnavailableError(self.probe().reason)
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine((workdir / "model.engine").read_bytes())
        if engine is None:
            raise CompilationError("TensorRT could not deserialise the engine")
        return TrtCompiled(engine, [s.name for s in model.inputs], list(model.output_names))
