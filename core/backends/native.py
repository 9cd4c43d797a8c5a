"""The ``native`` backend: the model's own framework. It is the reference and the fallback."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import distribution_version
from .base import Availability, CompiledModel, CompileRequest

if TYPE_CHECKING:
    from ..model import ModelHandle


class NativeCompiled:
    """Runs the model in its framework."""

    def __init__(self, model: ModelHandle):
        self._model = model

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the framework on ``feeds``."""
        return self._model.run(feeds)


class NativeBackend:
    """The framework itself (PyTorch, TensorFlow, or ONNX Runtime unoptimised for ONNX files)."""

    name = "native"
    dynamic_batch = True
    cacheable = False
    auto_excluded = ""

    @functools.cache  # noqa: B019 - one instance per process
    def probe(self) -> Availability:
        """Native always runs; report the frameworks installed."""
        versions = [f"{d} {v}" for d in ("torch", "tensorflow", "tensorflow-cpu", "onnxruntime")
                    if (v := distribution_version(d))]
        return Availability(name=self.name, available=True, version=self.version(),
                            devices=("cpu",), reason="; ".join(versions))

    def version(self) -> str:
        """Native has no version of its own."""
        return "-"

    def supports_precision(self, precision: str) -> str | None:
        """The framework as the user has it: the fp32 reference."""
        return None if precision == "fp32" else "native is the fp32 reference"

    def supports(self, model: ModelHandle) -> str | None:
        """Every model runs natively."""
        return None

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Nothing to compile."""
        return NativeCompiled(model)

    load = compile
