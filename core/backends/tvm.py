"""The ``tvm`` backend: Apache TVM Relax, built for the host CPU (llvm) or CUDA when a GPU exists.

Imports ``torch.export`` programs directly and everything else through ONNX. Untuned by default
(DLight's generic schedules); MetaSchedule tuning on the CPU is opt-in, ``options={"tvm":
{"tune_trials": N}}`` (N measured trials over all of the model's kernels), because it takes
minutes.

Tuning records live beside the compile cache, in ``<cache_dir>/tvm-tuning/<target>/``, one
MetaSchedule JSON database per target. Its workloads are keyed by the structural hash of each
fused kernel, so they are content-addressed: a kernel already tuned for any model (the same
convolution in another ResNet, the same matmul shape in another encoder) is not tuned again,
and a second model that shares layers with the first tunes only what is new. The search uses a
random cost model (MetaSchedule's XGBoost model would need ``xgboost``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import file_lock
from ..errors import CompilationError, ConversionError, missing_extra
from . import distribution_version, module_available
from .base import Availability, CompiledModel, CompileRequest
from .lengths import (
    bucket_sizes,
    bucketed_dim,
    load_buckets,
    output_axes,
    read_plan,
    write_plan,
)

if TYPE_CHECKING:
    from ..model import ModelHandle

logger = logging.getLogger(__name__)


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
    auto_excluded = ("left out of auto: untuned, TVM ran many times slower than native on the "
                     "CPU for every benchmarked model (README, TVM table); name it in backends "
                     "to try it")

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
        """Any model whose dims are static but for the batch and at most one masked length.

        Untuned symbolic kernels run slowly, so every dynamic dim is built static: the batch
        per bucket of ``batch_sizes``, and a dim beyond it (``seq``) per length bucket
        (``lengths.py``), which is only correct where a padding mask shares that dim. Image
        sizes (``h``, ``w``) and other unmasked dims are declined with the reason.
        """
        why = bucketed_dim(model)[1]
        return f"{why}; give them static sizes to try tvm" if why else None

    def _target(self, request: CompileRequest) -> tuple[Any, str]:
        import tvm

        device = str(request.options.get("device", "cuda" if tvm.cuda().exist else "cpu"))
        if device == "cuda":
            arch = "sm_" + tvm.cuda().compute_version.replace(".", "")
            return tvm.target.Target({"kind": "cuda", "arch": arch}), device
        return tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                                  "num-cores": request.threads or 0}), device

    def _import(self, model: ModelHandle, request: CompileRequest,
                sizes: Mapping[str, int] | None = None) -> Any:
        """The Relax module with every dynamic dim bound.

        The batch is bound to ``request.batch`` and each named dim to its size in ``sizes``.
        """
        from tvm import relax

        sizes = dict(sizes or {})
        if request.batch is not None and model.batched:
            sizes["batch"] = request.batch
        try:
            if model.framework == "torch" and model.kind != "torchscript":
                from tvm.relax.frontend.torch import from_exported_program

                ep = model.exported_program(dynamic_batch=True)  # type: ignore[attr-defined]
                mod = from_exported_program(ep, keep_params_as_input=False,
                                            unwrap_unit_return_tuple=True)
                bind = _symbol_sizes(ep, model, sizes)
                sym = relax.analysis.defined_symbolic_vars(mod["main"])
                if not bind and list(sizes) == ["batch"] and len(sym) == 1:
                    bind = {sym[0].name: sizes["batch"]}  # the batch is the only symbol
                if bind:
                    mod = relax.transform.BindSymbolicVars(bind)(mod)
                return mod
            import onnx
            from tvm.relax.frontend.onnx import from_onnx

            proto = onnx.load(str(model.onnx_path(dynamic_batch=True)))
            shapes = {s.name: [d if isinstance(d, int) else sizes.get(str(d), 1) for d in s.shape]
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
        dim = bucketed_dim(model)[0]
        if dim is not None:
            return self._compile_lengths(model, request, workdir, dim)
        self._build(self._import(model, request), request, workdir / "model.so")
        return self.load(model, request, workdir)

    def _compile_lengths(self, model: ModelHandle, request: CompileRequest, workdir: Path,
                         dim: str) -> CompiledModel:
        """One static build per length bucket of ``dim``, each timed once at its length."""
        lo, hi = model.dim_ranges[dim]
        sizes = bucket_sizes(lo, hi)
        builds: dict[int, CompiledModel] = {}
        for size in sizes:
            logger.info("tvm: building %s=%d (%d of %d)", dim, size, len(builds) + 1, len(sizes))
            self._build(self._import(model, request, {dim: size}), request,
                        workdir / f"model_{size}.so")
            builds[size] = self._load_one(model, workdir, f"model_{size}.so")
        p50 = {size: _p50(build, model.random_feeds(batch=request.batch or 1, seed=size,
                                                    dims={dim: size}))
               for size, build in builds.items()}
        write_plan(workdir, dim, sizes, output_axes(builds, model, dim, request.batch), p50)
        logger.info("tvm: %s buckets %s, p50 ms %s", dim, sizes,
                    ", ".join(f"{k}: {v:.2f}" for k, v in p50.items()))
        return self.load(model, request, workdir)

    def _build(self, mod: Any, request: CompileRequest, path: Path) -> None:
        """Build ``mod`` for the target and export the library to ``path``."""
        import tvm

        workdir = path.parent
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
            trials = int(request.options.get("tune_trials", 0))
            if trials > 0 and device == "cpu":
                ex = self._tuned_build(mod, target, trials, request, workdir)
            else:
                ex = tvm.compile(mod, target=target)
            ex.export_library(str(path))
        except Exception as exc:
            raise CompilationError(f"tvm build failed: {type(exc).__name__}: {exc}") from exc
        (workdir / "device").write_text(device)

    def _tuned_build(self, mod: Any, target: Any, trials: int, request: CompileRequest,
                     workdir: Path) -> Any:
        """Tune the kernels the records lack with MetaSchedule, then build with the records.

        The steps of TVM's ``static_shape_tuning`` pipeline, with the tuning split out so that
        kernels already in the records are not tuned again.
        """
        import tvm
        from tvm import relax
        from tvm.s_tir import meta_schedule as ms

        tdir = tuning_dir(request, target)
        tdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(tdir, 0o700)  # records beside the cache are private like its entries
        with target:
            mod = tvm.transform.Sequential([
                relax.transform.DecomposeOpsForInference(),
                relax.transform.CanonicalizeBindings(),
                relax.get_pipeline("zero"),
            ])(mod)
        with file_lock(tdir / ".lock"):  # one process tunes a target's records at a time
            db = ms.database.JSONDatabase(work_dir=str(tdir), module_equality="structural")
            tasks = ms.relax_integration.extract_tasks(mod, target)
            todo = [t for t in tasks if not _has_record(db, t, target)]
            logger.info("tvm: %d kernels, %d with tuning records already, tuning %d with %d "
                        "trials", len(tasks), len(tasks) - len(todo), len(todo), trials)
            started = time.perf_counter()
            if todo:
                contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                    todo, work_dir=str(tdir), num_threads=request.threads or "physical", seed=0)
                # One builder process with a long timeout: with the default (one per core,
                # 30 s) every build timed out on a 2-core machine while the workers started.
                ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(tdir),
                                   max_trials_global=trials, num_trials_per_iter=min(64, trials),
                                   builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=300),
                                   database=db, cost_model="random")
            still = [t for t in todo if not _has_record(db, t, target)]
            (workdir / "tuning.json").write_text(json.dumps({
                "kernels": len(tasks), "reused": len(tasks) - len(todo),
                "tuned": len(todo) - len(still), "untuned": len(still),
                "trials": trials if todo else 0, "tune_s": round(time.perf_counter() - started, 1),
                "records": str(tdir)}))
            with target:
                mod = relax.transform.MetaScheduleApplyDatabase(str(tdir))(mod)
        return tvm.compile(mod, target=target)

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Load ``model.so`` from ``workdir`` (or each length bucket's library)."""
        if not module_available("tvm"):
            raise missing_extra("tvm", "tvm")
        plan = read_plan(workdir)
        if plan is not None:
            return load_buckets(model, plan,
                                lambda size: self._load_one(model, workdir, f"model_{size}.so"))
        return self._load_one(model, workdir, "model.so")

    @staticmethod
    def _load_one(model: ModelHandle, workdir: Path, name: str) -> TvmCompiled:
        import tvm

        try:
            lib = tvm.runtime.load_module(str(workdir / name))
        except Exception as exc:
            raise CompilationError(f"tvm could not load the library: {exc}") from exc
        device = (workdir / "device").read_text().strip() if (workdir / "device").exists() else "cpu"
        return TvmCompiled(lib, [s.name for s in model.inputs], device)


def _p50(build: CompiledModel, feeds: Mapping[str, np.ndarray]) -> float:
    """A short p50 of one length bucket (ms), for the plan and the log."""
    from ..bench import measure

    return measure(lambda: build.run(feeds), budget_s=0.1, warmup=1).p50_ms


def _symbol_sizes(ep: Any, model: ModelHandle, sizes: Mapping[str, int]) -> dict[str, int]:
    """torch.export's symbol for each dim in ``sizes`` (``batch`` or a named dim) -> its size.

    TVM names its symbolic vars after torch's symbols (``s23``), in no fixed order, so each is
    found through the input placeholder and axis that carry the dim.
    """
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    out: dict[str, int] = {}
    for spec in model.inputs:
        node = placeholders.get(spec.name)
        if node is None or "val" not in node.meta:
            continue
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, str) and dim in sizes:
                sym = node.meta["val"].shape[axis]
                if not isinstance(sym, int):
                    out[str(sym)] = sizes[dim]
    return out


def tuning_dir(request: CompileRequest, target: Any) -> Path:
    """Where the tuning records for ``target`` live: beside the compile cache."""
    from ..config import default_cache_dir

    root = Path(request.options.get("tuning_dir") or request.cache_dir or default_cache_dir())
    key = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    return root / "tvm-tuning" / key


def _has_record(db: Any, task: Any, target: Any) -> bool:
    """True when ``db`` holds a measured schedule for the task's kernel."""
    kernel = task.dispatched[0]
    return bool(db.has_workload(kernel)
                and db.query_tuning_record(kernel, target, task.task_name) is not None)

