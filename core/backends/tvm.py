"""The ``tvm`` backend: Apache TVM Relax, built for the host CPU (llvm) or CUDA when a GPU exists.

Imports ``torch.export`` programs directly and everything else through ONNX. Untuned: tuning
with MetaSchedule is opt-in (``options={"tvm": {"tune_trials": N}}``) because it takes minutes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CompilationError, ConversionError, missing_extra
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "Array":
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


class TvmCompiled:
    """A Relax executable with one VirtualMachine per calling thread."""

    def __init__(self, lib: Any, input_names: list[str], device: str):
        import tvm

        self._lib = lib
        self._inputs = input_names
        self._dev = tvm.cuda() if device == "cuda" else tvm.cpu()
        self._tls = threading.local()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run ``main`` on this thread's VM."""
        import tvm
        from tvm import relax

        vm = getattr(self._tls, "vm", None)
        if vm is None:
            vm = self._tls.vm = relax.VirtualMachine(self._lib, self._dev)
        args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[n]), self._dev) for n in self._inputs]
        return [np.asarray(t.numpy()) for t in _flatten(vm["main"](*args))]


class TvmBackend:
    """Apache TVM (Relax)."""

    name = "tvm"
    dynamic_batch = False  # untuned dynamic-shape kernels are slow; compile one bucket each
    cacheable = True

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Available when ``tvm`` imports with an LLVM backend."""
        if not module_available("tvm"):
            return Availability(name=self.name, available=False,
                                reason="not installed: pip install 'yellowstone[tvm]'")
        try:
            import tvm

            llvm = tvm.target.codegen.llvm_version_major()
            cpu = tvm.target.codegen.llvm_get_system_cpu()
            devices = ["cpu"] + (["cuda"] if tvm.cuda().exist else [])
        except Exception as exc:  # noqa: BLE001 - a broken install is "unavailable"
            return Availability(name=self.name, available=False, reason=f"tvm broken: {exc}")
        return Availability(name=self.name, available=True, version=self.version(),
                            devices=tuple(devices), reason=f"llvm {llvm}, mcpu={cpu}")

    def version(self) -> str:
        """Installed TVM version."""
        return distribution_version("apache-tvm", "tvm") or "?"

    def supports_precision(self, precision: str) -> str | None:
        """fp32 only."""
        return None if precision == "fp32" else f"tvm serves fp32 only; {precision} is not wired"

    def supports(self, model: ModelHandle) -> str | None:
        """TVM takes fp32 models only here."""
        return None

    def _target(self, request: CompileRequest) -> tuple[Any, str]:
        import tvm

        device = str(request.options.get("device", "cuda" if tvm.cuda().exist else "cpu"))
        if device == "cuda":
            arch = "sm_" + tvm.cuda().compute_version.replace(".", "")
            return tvm.target.Target({"kind": "cuda", "arch": arch}), device
        return tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                                  "num-cores": request.threads or 0}), device

    def _import(self, model: ModelHandle, request: CompileRequest) -> Any:
        from tvm import relax

        try:
            if model.framework == "torch" and model.kind != "torchscript":
                from tvm.relax.frontend.torch import from_exported_program

                ep = model.exported_program(dynamic_batch=True)  # type: ignore[attr-defined]
                mod = from_exported_program(ep, keep_params_as_input=False,
                                            unwrap_unit_return_tuple=True)
                if request.batch is not None and model.batched:
                    # Specialise the symbolic batch dim to this bucket.
                    # Symbolic vars are defined in parameter order: dim 0 of input 0 first.
                    sym = relax.analysis.defined_symbolic_vars(mod["main"])
                    if sym:
                        mod = relax.transform.BindSymbolicVars({sym[0].name: request.batch})(mod)
                return mod
            import onnx
            from tvm.relax.frontend.onnx import from_onnx

            proto = onnx.load(str(model.onnx_path(dynamic_batch=True)))
            shapes = {s.name: [d if isinstance(d, int) else 1 for d in s.shape]
                      for s in model.specs_for(request.batch)}
            dtypes = {s.name: s.dtype for s in model.inputs}
            return from_onnx(proto, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"tvm could not import the model: {type(exc).__name__}: {exc}") from exc

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Import, build for the target, export a shared library into ``workdir``."""
        if not module_available("tvm"):
            raise missing_extra("tvm", "tvm")
        if request.precision != "fp32":
            raise CompilationError(f"tvm backend serves fp32 only; {request.precision} is not wired")
        import tvm

        mod = self._import(model, request)
        target, device = self._target(request)
        try:
            if device == "cuda":
                from tvm import dlight

                with target:
                    mod = tvm.ir.transform.Sequential([
                        tvm.relax.get_pipeline("zero"),
                        dlight.ApplyDefaultSchedule(dlight.gpu.Matmul(), dlight.gpu.GEMV(),
                                                    dlight.gpu.Reduction(),
                                                    dlight.gpu.GeneralReduction(),
                                                    dlight.gpu.Fallback()),
                    ])(mod)
            ex = tvm.compile(mod, target=target)
            ex.export_library(str(workdir / "model.so"))
        except Exception as exc:
            raise CompilationError(f"tvm build failed: {type(exc).__name__}: {exc}") from exc
        (workdir / "device").write_text(device)
        return self.load(model, request, workdir)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Load ``model.so`` from ``workdir``."""
        if not module_available("tvm"):
            raise missing_extra("tvm", "tvm")
        import tvm

        try:
            lib = tvm.runtime.load_module(str(workdir / "model.so"))
        except Exception as exc:
            raise CompilationError(f"tvm could not load the library: {exc}") from exc
        device = (workdir / "device").read_text().strip() if (workdir / "device").exists() else "cpu"
        return TvmCompiled(lib, [s.name for s in model.inputs], device)
