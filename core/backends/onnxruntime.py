"""The ``onnxruntime`` backend: ONNX Runtime with full graph optimisation (CPU, CUDA, TensorRT EPs).

``int8`` is ONNX Runtime's own post-training quantisation: static QDQ (activations uint8,
weights int8 per channel, ranges from the calibration set by MinMax) for models with
convolutions; dynamic quantisation (int8 weights, activation ranges computed per call) for the
rest, the recipe ONNX Runtime recommends for transformers. ``options={"onnxruntime":
{"int8_mode": "static"|"dynamic"}}`` overrides the choice. On x86 CPUs without VNNI the uint8 x
int8 kernels can in principle saturate; ONNX Runtime's remedy, 7-bit weights (``"reduce_range":
true``), is off by default because it cost far more accuracy than it saved on the models we
measured (ResNet-50 top-1 agreement 0.73 with it, 1.00 without, at the same speed).
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, CompilationError, missing_extra
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle

logger = logging.getLogger(__name__)

_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


class OrtCompiled:
    """An ``InferenceSession``; ``run`` is thread-safe in ONNX Runtime."""

    def __init__(self, session: Any, input_names: list[str]):
        self.session = session
        self._inputs = input_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session."""
        return self.session.run(None, {n: feeds[n] for n in self._inputs})


class _Reader:
    """ONNX Runtime's calibration reader protocol over a list of named feeds."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # only needed by calibration methods that read twice
        pass


class OnnxRuntimeBackend:
    """ONNX Runtime; reads ONNX, so torch and TF models go through a conversion path first."""

    name = "onnxruntime"
    dynamic_batch = True
    cacheable = True
    owns_threads = True  # its thread pool is sized per compiled model (follow_load)
    auto_excluded = ""

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

    def supports_precision(self, precision: str) -> str | None:
        """fp32, and int8 through ONNX Runtime's quantisation tools."""
        if precision in ("fp32", "int8"):
            return None
        return (f"onnxruntime serves fp32 and int8 here; {precision} would need a converted "
                "model (openvino runs bf16 on CPUs that have it)")

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Convert to ONNX (if needed), quantise for int8, keep the file in ``workdir``, open it."""
        why = self.supports_precision(request.precision)
        if why:
            raise CompilationError(why)
        src = model.onnx_path(dynamic_batch=request.batch is None)
        if request.precision == "int8":
            self._quantize(src, request, workdir / "model.onnx")
        else:
            shutil.copyfile(src, workdir / "model.onnx")
            data = src.with_name(src.name + ".data")
            if data.exists():  # external weights written by the exporter for large models
                shutil.copyfile(data, workdir / data.name)
        return self.load(model, request, workdir)

    def _quantize(self, src: Path, request: CompileRequest, dst: Path) -> None:
        """Write an int8 version of ``src`` to ``dst`` (static QDQ or dynamic, see module doc)."""
        import onnx
        from onnxruntime import quantization as q

        mode = request.options.get("int8_mode")
        if mode is None:
            ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
            mode = "static" if ops & {"Conv", "ConvTranspose"} else "dynamic"
        if mode not in ("static", "dynamic"):
            raise CompilationError(f"int8_mode must be static or dynamic, not {mode!r}")
        reduce_range = bool(request.options.get("reduce_range", False))
        with tempfile.TemporaryDirectory(prefix="yellowstone-ort-int8-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            try:  # shape inference + graph cleanup, as ONNX Runtime advises before quantising
                q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation only
                logger.debug("quant_pre_process skipped: %s", exc)
                pre = src
            try:
                if mode == "static":
                    batches = request.calibration_batches()
                    if not batches:
                        raise CompilationError("static int8 needs calibration inputs")
                    q.quantize_static(
                        str(pre), str(dst), _Reader(batches), quant_format=q.QuantFormat.QDQ,
                        per_channel=True, reduce_range=reduce_range,
                        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                        calibrate_method=q.CalibrationMethod.MinMax)
                else:
                    q.quantize_dynamic(str(pre), str(dst), per_channel=True,
                                       reduce_range=reduce_range, weight_type=q.QuantType.QInt8)
            except CompilationError:
                raise
            except Exception as exc:
                raise CompilationError(f"onnxruntime {mode} int8 quantisation failed: "
                                       f"{type(exc).__name__}: {exc}") from exc

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
