"""The ``openvino`` backend: OpenVINO Runtime, reading torch, TF and ONNX models directly.

Named dynamic dims (``seq``, ``h``) stay dynamic in the partial shapes, bounded by their range.

Precision is always set explicitly (``INFERENCE_PRECISION_HINT``): on CPUs with AVX512_BF16 or
AMX OpenVINO would otherwise run bf16 silently. On a CPU without native bf16 (or fp16) OpenVINO
would quietly run fp32 for such a hint, so those precisions are declined there, and every
compiled model is asked which precision it actually runs.

``int8`` quantises the imported model with NNCF's post-training quantisation on the calibration
set (the transformer preset for models without convolutions), then compiles it with an fp32
hint: the quantised layers run in int8, the rest in fp32.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CompilationError, ConversionError, missing_extra
from ..hardware import available_cores
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle
    from ..spec import TensorSpec

_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
_TYPE_NAMES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def _port_index(ports: Any, names: list[str]) -> list[int]:
    """Each input's port: by name where OpenVINO kept the model's names, else by position."""
    port_names = [set(p.get_names()) for p in ports]
    return [next((j for j, pn in enumerate(port_names) if n in pn), i) for i, n in enumerate(names)]


def _partial_shape(ov: Any, spec: TensorSpec) -> Any:
    """The OpenVINO shape of ``spec``: static dims as they are, named dims bounded by their range.

    The bounds cost nothing measurable (MiniLM, seq 7..128) and make OpenVINO itself refuse a
    shape outside the range; the batch and anonymous dims stay unbounded.
    """
    dims = []
    for d in spec.shape:
        bounds = spec.range_of(d) if isinstance(d, str) else None
        if isinstance(d, int):
            dims.append(ov.Dimension(d))
        elif bounds is not None:
            dims.append(ov.Dimension(*bounds))
        else:
            dims.append(ov.Dimension(-1))
    return ov.PartialShape(dims)


class OvCompiled:
    """A compiled OpenVINO model with one infer request per calling thread."""

    def __init__(self, compiled: Any, input_names: list[str]):
        self.compiled = compiled
        self._tls = threading.local()
        self._index = list(zip(input_names, _port_index(compiled.inputs, input_names)))
        self._outputs = compiled.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run with this thread's infer request."""
        req = getattr(self._tls, "req", None)
        if req is None:
            req = self._tls.req = self.compiled.create_infer_request()
        res = req.infer({idx: np.ascontiguousarray(feeds[name]) for name, idx in self._index})
        return [np.array(res[o]) for o in self._outputs]


class OpenVinoBackend:
    """Intel OpenVINO on the CPU (and Intel GPUs where its plugin finds one)."""

    name = "openvino"
    dynamic_batch = True
    # Fixed shapes run faster than the dynamic batch: on a 2-core Zen 5, ResNet-50 bf16 9.8 ms
    # against 11.2 at batch 1 (72 against 82 at batch 8), MobileNetV3 fp32 1.94 against 2.22 ms.
    static_buckets = True
    cacheable = True
    owns_threads = True  # its thread pool is sized per compiled model (follow_load)
    auto_excluded = ""

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Available when ``openvino`` imports; devices from ``Core().available_devices``."""
        if not module_available("openvino"):
            return Availability(name=self.name, available=False,
                                reason="not installed: pip install 'yellowstone[openvino]'")
        import openvino as ov

        return Availability(name=self.name, available=True, version=self.version(),
                            devices=tuple(d.lower() for d in ov.Core().available_devices))

    def version(self) -> str:
        """Installed OpenVINO version."""
        return distribution_version("openvino") or "?"

    def supports(self, model: ModelHandle) -> str | None:
        """OpenVINO imports every framework we take."""
        return None

    def supports_precision(self, precision: str) -> str | None:
        """fp32 anywhere; int8 with NNCF installed; bf16/fp16 where the CPU computes them natively."""
        if precision == "fp32":
            return None
        if precision == "int8":
            return None if module_available("nncf") else \
                "int8 needs NNCF: pip install 'yellowstone[openvino]'"
        from ..hardware import detect

        hw = detect()
        need = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}.get(
            precision, ())
        if not any(hw.has(f) for f in need):
            return (f"this CPU has no native {precision} ({' or '.join(need) or 'unknown'}); "
                    f"OpenVINO would run fp32 instead")
        return None

    def _quantize(self, ov_model: Any, model: ModelHandle, request: CompileRequest) -> Any:
        """NNCF post-training quantisation of ``ov_model`` on the request's calibration set."""
        if not module_available("nncf"):
            raise missing_extra("nncf", "openvino")
        import nncf

        batches = request.calibration_batches()
        if not batches:
            raise CompilationError("int8 needs calibration inputs")
        names = [s.name for s in model.inputs]
        index = _port_index(ov_model.inputs, names)
        items = [{idx: feeds[n] for n, idx in zip(names, index)} for feeds in batches]
        convs = any(op.get_type_name() in ("Convolution", "GroupConvolution")
                    for op in ov_model.get_ops())
        try:
            return nncf.quantize(
                ov_model, nncf.Dataset(items), subset_size=len(items),
                preset=nncf.QuantizationPreset.PERFORMANCE if convs else nncf.QuantizationPreset.MIXED,
                model_type=None if convs else nncf.ModelType.TRANSFORMER)
        except Exception as exc:
            raise CompilationError(f"NNCF int8 quantisation failed: {type(exc).__name__}: "
                                   f"{exc}") from exc

    def _convert(self, model: ModelHandle, request: CompileRequest) -> Any:
        import openvino as ov

        dynamic = request.batch is None
        route = request.options.get("import", "direct")
        try:
            if route == "onnx" or model.framework == "onnx":
                ov_model = ov.convert_model(str(model.onnx_path(dynamic_batch=dynamic)))
            elif model.framework == "torch" and model.kind == "torchscript":
                import torch

                example = tuple(torch.from_numpy(model.example_feeds[s.name]) for s in model.inputs)
                ov_model = ov.convert_model(model.module_copy(),  # type: ignore[attr-defined]
                                            example_input=example)
            elif model.framework == "torch":
                ov_model = ov.convert_model(model.exported_program(  # type: ignore[attr-defined]
                    dynamic_batch=dynamic, batch=request.batch))
            elif getattr(model, "signature_key", "serving_default") == "serving_default":
                ov_model = ov.convert_model(str(model.saved_model_path()))  # type: ignore[attr-defined]
            else:  # the directory would give serving_default: convert the signature's function
                ov_model = ov.convert_model(model.signature_function())  # type: ignore[attr-defined]
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"openvino could not import the model: {exc}") from exc
        shapes = {}
        specs = model.specs_for(request.batch)
        for spec, i in zip(specs, _port_index(ov_model.inputs, [s.name for s in specs])):
            if i < len(ov_model.inputs):
                shapes[ov_model.inputs[i]] = _partial_shape(ov, spec)
        try:
            ov_model.reshape(shapes)
        except Exception as exc:
            raise CompilationError(f"openvino could not set input shapes: {exc}") from exc
        return ov_model

    def _config(self, request: CompileRequest) -> dict[str, str]:
        config = {"INFERENCE_PRECISION_HINT": _PRECISION_HINT[request.precision],  # int8: f32
                  "PERFORMANCE_HINT": "LATENCY"}
        if request.threads:
            config["INFERENCE_NUM_THREADS"] = str(request.threads)
            if request.threads < available_cores():
                # A share of the cores (one of several workers): OpenVINO pins each process's
                # threads from the first core up, so every worker's threads would stack on the
                # same cores (two 1-thread ResNet-50 workers: 5.6 calls/s each pinned, 11.7
                # unpinned). The scheduler spreads unpinned threads over the cores.
                config["ENABLE_CPU_PINNING"] = "NO"
        config.update({k: str(v) for k, v in dict(request.options.get("config", {})).items()})
        return config

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Import the model, save it as IR in ``workdir``, compile it for the device."""
        if not module_available("openvino"):
            raise missing_extra("openvino", "openvino")
        import openvino as ov

        why = self.supports_precision(request.precision)
        if why:
            raise CompilationError(why)
        ov_model = self._convert(model, request)
        if request.precision == "int8":
            ov_model = self._quantize(ov_model, model, request)
        ov.save_model(ov_model, str(workdir / "model.xml"), compress_to_fp16=False)
        return self.load(model, request, workdir)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Read the IR from ``workdir`` and compile it."""
        if not module_available("openvino"):
            raise missing_extra("openvino", "openvino")
        import openvino as ov

        device = str(request.options.get("device", "CPU"))
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(workdir / "model.xml")), device,
                                          self._config(request))
        except Exception as exc:
            raise CompilationError(f"openvino could not compile for {device}: {exc}") from exc
        wanted = _PRECISION_HINT[request.precision]
        try:  # "<Type: 'float32'>" or "f32", depending on the version
            runs = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        except Exception:  # noqa: BLE001 - a device that does not report it
            runs = wanted
        runs = runs.removeprefix("<type: '").removesuffix("'>")
        if _TYPE_NAMES.get(runs, runs) != wanted:
            raise CompilationError(f"openvino on {device} runs {runs}, not the requested "
                                   f"{request.precision}")
        return OvCompiled(compiled, [s.name for s in model.inputs])
