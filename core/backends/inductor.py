"""The ``inductor`` backend: PyTorch's own compiler, packaged ahead of time (AOTInductor).

This is what a PyTorch user would reach for instead of yellowstone, so it is built as PyTorch
advises for CPU inference: frozen (``freezing``: weights folded in as constants), with
fixed-shape buckets beside the dynamic batch, and ``bf16`` by ``torch.autocast("cpu",
torch.bfloat16)`` (the program is exported under autocast, so its casts are compiled in;
offered where the CPU computes bf16 natively). The artifact is an AOTInductor ``.pt2``
package, loadable without recompiling.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CompilationError, missing_extra
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle


class InductorCompiled:
    """An AOTInductor package runner (calls are serialised: one runner per package)."""

    def __init__(self, runner: Any, input_names: list[str]):
        self._runner = runner
        self._inputs = input_names
        self._lock = threading.Lock()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the compiled package on torch views of the feeds."""
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self._inputs]
        with self._lock, torch.inference_mode():
            out = self._runner(*args)
        leaves = torch.utils._pytree.tree_leaves(out)
        # under autocast the last matmul answers in bf16, which NumPy has no type for
        return [(t.float() if t.dtype == torch.bfloat16 else t).detach().numpy() for t in leaves]


class InductorBackend:
    """``torch._inductor`` AOT compilation of a ``torch.export`` program."""

    name = "inductor"
    dynamic_batch = True
    # Fixed shapes let inductor's oneDNN passes prepack the weights: on a 2-core Zen 5,
    # ResNet-50 (frozen) ran 20.3 ms fp32 and 11.7 ms bf16 at batch 1, against 30.2 and 22.7 ms
    # with a dynamic batch.
    static_buckets = True
    cacheable = True
    auto_excluded = ""

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Available when torch imports (a C++ compiler is needed at compile time)."""
        if not module_available("torch"):
            return Availability(name=self.name, available=False,
                                reason="not installed: pip install 'yellowstone[inductor]'")
        import shutil

        if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return Availability(name=self.name, available=False, version=self.version(),
                                reason="no C++ compiler on PATH")
        return Availability(name=self.name, available=True, version=self.version(),
                            devices=("cpu",))

    def version(self) -> str:
        """Installed torch version."""
        return distribution_version("torch") or "?"

    def supports_precision(self, precision: str) -> str | None:
        """fp32; bf16 (autocast) where the CPU has it; not int8 (that needs PT2E quantisation)."""
        if precision == "fp32":
            return None
        if precision == "bf16":
            from ..hardware import detect

            hw = detect()
            if not (hw.has("avx512_bf16") or hw.has("amx_bf16")):
                return "this CPU has no native bf16 (avx512_bf16 or amx_bf16) for autocast"
            return None
        return f"inductor serves fp32 and bf16; {precision} is not wired"

    def supports(self, model: ModelHandle) -> str | None:
        """Only torch models that ``torch.export`` can trace."""
        if model.framework != "torch":
            return f"inductor compiles torch models only (this is {model.framework})"
        if model.kind == "torchscript":
            return "inductor cannot compile TorchScript modules"
        return None

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Export (dynamic batch where allowed) and AOT-compile into ``workdir/model.pt2``."""
        if not module_available("torch"):
            raise missing_extra("torch", "inductor")
        import torch

        why = self.supports_precision(request.precision)
        if why:
            raise CompilationError(why)
        autocast = torch.bfloat16 if request.precision == "bf16" else None
        ep = model.exported_program(dynamic_batch=request.batch is None,  # type: ignore[attr-defined]
                                    batch=request.batch, autocast=autocast)
        try:  # freezing, as PyTorch advises for CPU inference: weights folded in as constants
            with torch.no_grad():
                torch._inductor.aoti_compile_and_package(ep, package_path=str(workdir / "model.pt2"),
                                                         inductor_configs={"freezing": True})
        except Exception as exc:
            raise CompilationError(f"AOTInductor failed: {type(exc).__name__}: {exc}") from exc
        return self.load(model, request, workdir)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Load the AOTInductor package."""
        if not module_available("torch"):
            raise missing_extra("torch", "inductor")
        import torch

        try:
            runner = torch._inductor.aoti_load_package(str(workdir / "model.pt2"))
        except Exception as exc:
            raise CompilationError(f"AOTInductor could not load the package: {exc}") from exc
        return InductorCompiled(runner, [s.name for s in model.inputs])
