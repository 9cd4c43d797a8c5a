"""The boost handler: run a TorchServe handler as written, with only its model's forward boosted.

:class:`BoostHandler` loads the handler named in the ``yellowstone:`` section of
model-config.yaml (a built-in or the user's own file), lets it ``initialize`` as usual, then
swaps ``handler.model`` for a thin stand-in that calls :func:`yellowstone.boost`'s result. The
wrapped handler's ``preprocess``, ``inference`` and ``postprocess`` run unchanged, except that
the stock image pipeline of TorchServe's vision handlers is fused into the compiled model
(``fused.py``). Requests the wrapped handler rejects become TorchServe 4xx error responses, and
in a batch only the requests at fault fail (``isolation.py``); the worker keeps serving.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yellowstone import metrics, serving
from yellowstone.errors import BadRequestError, ConfigError, ModelLoadError, YellowstoneError

from .config import SECTION, PluginConfig, resolve
from .errors import RequestRejected, is_prediction_exception, prediction_exception
from .isolation import BatchIsolator
from .metrics import TorchServeMetrics
from .stand_ins import BoostedOrtSession, boosted_module_class

logger = logging.getLogger(__name__)

__all__ = ["BoostHandler", "RequestRejected", "load_handler_class"]


# ------------------------------------------------------------------------------------------
# finding the wrapped handler
# ------------------------------------------------------------------------------------------
def load_handler_class(spec: str) -> type:
    """Resolve a handler string as TorchServe's ``--handler`` takes it to a handler class.

    ``image_classifier`` (a module of ``ts.torch_handler``), ``my_handler.py`` or
    ``my_handler`` (a module in the model directory, which TorchServe puts on ``sys.path``;
    it must define exactly one class), or ``my_handler.py:MyHandler``.
    """
    module_part, _, attr = spec.partition(":")
    name = Path(module_part).name
    name = name[:-3] if name.endswith(".py") else name
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        try:
            module = importlib.import_module(f"ts.torch_handler.{name}")
        except ImportError:
            raise ConfigError(f"handler {spec!r}: no module {name!r} in the model archive "
                              f"(ship it with --extra-files) and no TorchServe built-in "
                              f"handler of that name ({exc})") from exc
    if attr:
        target = getattr(module, attr, None)
        if not inspect.isclass(target):
            raise ConfigError(f"handler {spec!r}: {attr!r} is not a class in {module.__name__}; "
                              "the boost handler wraps class-based handlers (BaseHandler "
                              "subclasses)")
        return target
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__]
    if len(classes) != 1:
        raise ConfigError(f"handler {spec!r}: expected exactly one class in {module.__name__}, "
                          f"found {[c.__name__ for c in classes]}; name one as "
                          f"'{module_part}:ClassName'")
    return classes[0]


class _Pt2LoadingContext:
    """A view of the worker context that lets BaseHandler load a ``torch.export`` ``.pt2``.

    BaseHandler only knows ``.pt`` (TorchScript); this view renames the serialized file so it
    takes the TorchScript branch, whose loader the boost handler points at ``torch.export.load``.
    """

    def __init__(self, context: Any):
        self._context = context
        self.manifest = copy.deepcopy(context.manifest)
        self.manifest["model"]["serializedFile"] += ".as.pt"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


# ------------------------------------------------------------------------------------------
class BoostHandler:
    """TorchServe entry point: wraps another handler and boosts its model's forward."""

    def __init__(self) -> None:
        self.inner: Any = None
        self.boosted: Any = None
        self.context: Any = None
        self.settings: PluginConfig | None = None
        self.boost_config: Any = None
        self.model_name = "model"
        self.model_dir = Path(".")
        self.initialized = False
        self._original: Any = None
        self._model_path: Path | None = None
        self._form = "nn.Module"
        self._bridge: TorchServeMetrics | None = None
        self._threads: serving.ThreadPlan | None = None
        self._torch_threads = 0  # torch's threads before _quiet_torch left it one (0: untouched)
        self._fused: Any = None  # fused.ImagePipeline when the image pipeline is compiled in
        self.fused_preprocess: Any = None  # its fused.FusedPreprocess (the handler's preprocess)
        self._fused_note = ""  # why preprocessing is (not) fused
        self._fast_inputs: tuple[str, ...] | None = None  # input names of the direct call path
        self._isolate: BatchIsolator | None = None

    # -- load --------------------------------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Initialize the wrapped handler, then boost its model (or schedule it for request 1)."""
        self.context = context
        self.model_name = getattr(context, "model_name", None) or "model"
        props = context.system_properties
        self.model_dir = Path(props.get("model_dir") or ".")
        self.settings, self.boost_config = resolve(getattr(context, "model_yaml_config", None),
                                                   props.get("batch_size"))
        self._share_cores()
        if self._bridge is not None:
            self._bridge.detach()
        self._bridge = TorchServeMetrics(lambda: self.context, lambda: self.backend).attach()

        handler_cls = load_handler_class(self.settings.handler)
        logger.info("%s: boosting handler %s.%s", self.model_name, handler_cls.__module__,
                    handler_cls.__qualname__)
        self.inner = handler_cls()
        self._init_inner(context)

        model = getattr(self.inner, "model", None)
        if model is None:
            raise ModelLoadError(f"handler {self.settings.handler!r} did not set self.model in "
                                 "initialize(); the boost handler needs it to boost")
        self._original = model
        self._classify_model(model)
        self._fuse_preprocessing()
        self._wrap_preprocess()
        self._isolate = BatchIsolator(self.model_name, self.inner.preprocess, self._handle)
        if self._form == "onnx":
            self.inner.model = BoostedOrtSession(model, self)
        else:
            self.inner.model = boosted_module_class()(model, self)
        if self._fused is not None:
            from .fused import example_input

            self._ensure_boosted((example_input(self._fused),), {})
            self._warm_batches()
        elif self.settings.inputs or self.settings.examples:
            self._ensure_boosted(self._example_inputs(), {})
            self._warm_batches()
        else:
            logger.info("%s: no input_shape in the '%s' section; the model is boosted on the "
                        "first request's preprocessed input", self.model_name, SECTION)
        serving.settle_heap()  # the loaded model's objects out of the collector's full passes
        self.initialized = True

    def _warm_batches(self) -> None:
        """Run every batch size TorchServe can send (1..batchSize) once, before any request.

        The served sizes are compiled by the boost (dynamic-batch backends: one artifact; static
        ones: a bucket per size, smaller batches padded up), so no batch recompiles; this run
        also pays each size's first-call cost (shape inference, memory arenas) at load.
        """
        boosted = self.boosted
        if boosted is None or not boosted.handle.batched:
            return
        t0 = time.perf_counter()
        largest = max(self.boost_config.batch_sizes)
        try:
            for batch in range(1, largest + 1):
                boosted.run(boosted.handle.random_feeds(batch=batch, seed=batch))
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation; requests still serve
            logger.warning("%s: warming batch sizes up to %d failed (%s: %s)", self.model_name,
                           largest, type(exc).__name__, exc)
            return
        logger.info("%s: batch sizes 1..%d warmed at load (%.2f s)", self.model_name, largest,
                    time.perf_counter() - t0)

    def _share_cores(self) -> None:
        """Give torch this worker's share of the cores, as TorchServe's performance guide advises.

        Several workers each running torch (the handler's preprocessing, ``native``) on all
        cores spin in each other's way; the backends get the same share from the core.
        """
        plan = serving.plan_threads(self.boost_config.workers, self.boost_config.threads)
        self._threads = plan
        if not plan.threads:
            return
        import torch

        if torch.get_num_threads() != plan.threads:
            logger.info("%s: %d workers on %d cores: torch and the backends use %d thread(s) "
                        "per worker (set yellowstone.threads to override)", self.model_name,
                        plan.workers, plan.cores, plan.threads)
            torch.set_num_threads(plan.threads)

    def _fuse_preprocessing(self) -> None:
        """Compile the stock image pipeline into the model where the handler uses it unchanged."""
        if not self.settings.fused_preprocess:
            self._fused_note = "off (yellowstone.fused_preprocess: false)"
            return
        if self._form == "onnx":
            self._fused_note = "not fused: the model is an ONNX Runtime session"
            return
        if not hasattr(self.inner, "image_processing"):
            self._fused_note = "not fused: the handler has no image pipeline"
            return
        from .fused import FusedPreprocess, recognise

        pipeline, why = recognise(self.inner)
        if pipeline is None:
            self._fused_note = f"not fused: {why}"
            logger.info("%s: preprocessing stays in the handler (%s)", self.model_name, why)
            return
        self._fused = pipeline
        self.fused_preprocess = FusedPreprocess(pipeline, self.inner.preprocess)
        self.inner.preprocess = self.fused_preprocess
        h, w = pipeline.crop_hw
        self._fused_note = f"fused: {pipeline.describe()}"
        logger.info("%s: %s recognised: images are decoded, resized and cropped to uint8 on the "
                    "host, the float conversion and Normalize are compiled into the model "
                    "(input uint8 Nx%dx%dx3)", self.model_name, pipeline.describe(), h, w)
        if self.settings.inputs:
            logger.info("%s: the configured input_shape describes the model's float input; the "
                        "fused model is boosted on uint8 Nx%dx%dx3 pixels instead",
                        self.model_name, h, w)

    def _init_inner(self, context: Any) -> None:
        manifest = getattr(context, "manifest", None) or {}
        serialized = manifest.get("model", {}).get("serializedFile", "")
        if serialized:
            self._model_path = self.model_dir / serialized
        if serialized.endswith(".pt2") and not manifest["model"].get("modelFile"):
            import torch

            real = self._model_path

            class ExportedModule(torch.nn.Module):
                """The program's module; BaseHandler calls eval(), which export rejects."""

                def __init__(self, module: Any):
                    super().__init__()
                    self.exported = module

                def forward(self, *args: Any, **kwargs: Any) -> Any:
                    return self.exported(*args, **kwargs)

                def train(self, mode: bool = True) -> ExportedModule:
                    return self

            def load_pt2(_path: str) -> Any:
                return ExportedModule(torch.export.load(str(real)).module())

            self.inner._load_torchscript_model = load_pt2
            self.inner.initialize(_Pt2LoadingContext(context))
            self.inner.manifest = context.manifest
            self.inner.model_pt_path = str(real)
            self._form = "pt2"
        else:
            self.inner.initialize(context)

    def _classify_model(self, model: Any) -> None:
        import torch

        if self._form == "pt2":
            return
        if type(model).__module__.startswith("onnxruntime"):
            self._form = "onnx"
        elif isinstance(model, torch.jit.ScriptModule):
            self._form = "torchscript"
        elif isinstance(model, torch.nn.Module):
            self._form = "nn.Module"
        else:
            raise ModelLoadError(f"handler.model is a {type(model).__module__}."
                                 f"{type(model).__name__}; the boost handler boosts torch "
                                 "modules, TorchScript, torch.export programs and ONNX sessions")

    def _examples(self) -> dict | None:
        """The real inputs of the section's ``examples`` .npz, or None."""
        if not self.settings.examples:
            return None
        return serving.read_examples(self.model_dir / self.settings.examples)

    def _example_inputs(self) -> tuple:
        """The ``examples``, else fresh random feeds for the configured specs, in call order."""
        feeds = self._examples() or serving.example_feeds(self.settings.inputs)
        if self._form == "onnx":
            return tuple(feeds.values())
        import torch

        return tuple(torch.from_numpy(a) for a in feeds.values())

    def _input_specs(self) -> tuple | None:
        """The configured specs when they keep a dim beyond the batch dynamic, else None.

        ``-1`` or a name past dim 0 (``input_ids:-1xseq=1..256:int64``) stays dynamic in the
        compiled model, within its range, and requests outside it are refused (400). Specs
        with only static dims (or a dynamic batch) change nothing: the example has their
        shape. None too when the image pipeline is fused in: the specs then describe the
        original model's float input, not the fused model's uint8 pixels.
        """
        specs = self.settings.inputs
        if self._fused is not None or not any(
                not isinstance(d, int) for s in specs for d in s.shape[1:]):
            return None
        return specs

    def _artifact_dir(self) -> Path | None:
        if not self.settings.artifact_dir:
            return None
        path = self.model_dir / self.settings.artifact_dir
        if not path.is_dir():
            logger.warning("%s: artifact_dir %s is not in the archive; compiling here",
                           self.model_name, path)
            metrics.emit(metrics.FALLBACKS, 1, model=self.model_name, backend="artifact",
                         reason="artifact-missing")
            return None
        return path

    def _ensure_boosted(self, args: tuple, kwargs: dict) -> Any:
        """Boost on first use (or at initialize when example inputs are configured)."""
        if self.boosted is not None:
            return self.boosted
        import yellowstone

        if self._fused is not None:
            from .fused import FusedImageModel

            model: Any = FusedImageModel(self._original, self._fused.mean, self._fused.std)
        elif self._form in ("onnx", "pt2") and self._model_path is not None:
            model = str(self._model_path)
        else:
            model = self._original
        if self._form == "onnx":
            names = [i.name for i in self._original.get_inputs()]
            example: Any = {n: a for n, a in zip(names, args)}
        else:
            example = tuple(a.detach().cpu() if hasattr(a, "detach") else a for a in args)
            if kwargs and not args:  # called by keyword: named example inputs
                example = {k: v.detach().cpu() if hasattr(v, "detach") else v
                           for k, v in kwargs.items()}
        specs = self._input_specs()
        samples = self._examples() if self._fused is None else None
        if samples is not None:  # named real inputs: the example and a validation sample
            example = samples
        t0 = time.perf_counter()
        try:
            self.boosted = yellowstone.boost(model, example, config=self.boost_config,
                                             input_specs=specs, artifact_dir=self._artifact_dir(),
                                             sample_inputs=[samples] if samples else ())
        except BadRequestError:
            raise
        except YellowstoneError as exc:
            logger.warning("%s: boosting failed (%s); serving on native", self.model_name, exc)
            metrics.emit(metrics.FALLBACKS, 1, model=self.model_name, backend="all",
                         reason="boost-error")
            self.boosted = yellowstone.boost(model, example, config=self.boost_config,
                                             input_specs=specs, backends="native")
        self._bridge.flush()
        report = self.boosted.report
        source = {"artifact": "precompiled archive", "hit": "cache"}.get(report.cache, "compiled here")
        logger.info("%s: served by backend %s (%s, %.2f s, handler %s)%s", self.model_name,
                    self.boosted.backend, source, time.perf_counter() - t0,
                    self.settings.handler,
                    f"; fallback: {report.fallback_reason}" if report.fallback_reason else "")
        compiled = {report.chosen, *report.dispatch.values()} - {"native"}
        if self._form != "onnx" and self.boosted.handle.framework == "torch" and compiled:
            self._fast_inputs = tuple(s.name for s in self.boosted.inputs)
        self._quiet_torch()
        return self.boosted

    def _quiet_torch(self) -> None:
        """While backends with their own thread pools serve, torch keeps one intra-op thread.

        torch then runs only the handler's small pre- and postprocessing ops, and libgomp's
        idle threads spin for milliseconds after each (its default wait policy) on the very
        cores the backend computes on: in one worker ResNet-50 bf16 took 24.7 ms a call on
        OpenVINO against 20.4 ms with OpenMP told to wait passively. ``OMP_WAIT_POLICY`` is
        read when libgomp loads, before any handler runs, so one thread is what a handler
        can do. Calls the framework serves (a fallback, or the handler's own path for an
        image the fused model does not take) get torch's threads back for their duration.
        """
        boosted = self.boosted
        if boosted is None:
            return
        import torch

        threads = self._torch_threads or torch.get_num_threads()
        if threads <= 1 or not boosted.own_thread_pools:
            if self._torch_threads:  # a re-boost that the framework may serve: threads back
                torch.set_num_threads(self._torch_threads)
                self._torch_threads = 0
            return
        boosted.native_scope = functools.partial(torch_threads, threads)
        if not self._torch_threads:
            torch.set_num_threads(1)
            self._torch_threads = threads
            logger.info("%s: torch keeps 1 thread while %s serves (its own thread pool); calls "
                        "served by torch get %d", self.model_name, boosted.backend, threads)

    def _call_boosted(self, args: tuple, kwargs: dict) -> Any:
        """The stand-in's forward: the boosted model, called as directly as it allows."""
        boosted = self.boosted
        if boosted is None:
            boosted = self._ensure_boosted(args, kwargs)
        if self._fused is not None and not _all_uint8(args):
            # The handler's own preprocessing ran (a tensor body, an unusual image): its float
            # tensor is the original model's input, not the fused model's.
            with boosted.native_scope():
                return self._original(*args, **kwargs)
        names = self._fast_inputs
        if names is not None and not kwargs and len(args) == len(names):
            feeds = _cpu_feeds(names, args)
            if feeds is not None:  # CPU tensors as they are: no per-call conversion or copy
                return boosted.handle.wrap_outputs(boosted.run(feeds), args, kwargs)
        device = next((a.device for a in args if hasattr(a, "device")), None)
        out = boosted(*args, **kwargs)
        if device is not None and str(device) != "cpu":
            import torch

            out = torch.utils._pytree.tree_map(
                lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, out)
        return out

    @property
    def backend(self) -> str:
        """The backend serving now (``pending`` before the first boost)."""
        return self.boosted.backend if self.boosted is not None else "pending"

    # -- requests ----------------------------------------------------------------------------
    def _wrap_preprocess(self) -> None:
        original = self.inner.preprocess
        owner = type(self.inner).__name__

        def preprocess(data: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(data, *args, **kwargs)
            except Exception as exc:
                if is_prediction_exception(exc):
                    raise
                raise RequestRejected(f"{owner}.preprocess rejected the request: "
                                      f"{type(exc).__name__}: {exc}") from exc

        self.inner.preprocess = preprocess

    def describe(self) -> dict:
        """What serves this model: backend, cache source, report (``?customized=true``)."""
        rep = self.boosted.report if self.boosted is not None else None
        return {"yellowstone": {
            "model": self.model_name, "handler": self.settings.handler if self.settings else None,
            "backend": self.backend, "form": self._form,
            "cache": rep.cache if rep else None, "load_s": rep.load_s if rep else None,
            "fallback_reason": rep.fallback_reason if rep else "",
            "batch_sizes": list(self.boost_config.batch_sizes) if self.boost_config else [],
            "inputs": ([s.to_dict() for s in self.boosted.inputs]
                       if self.boosted is not None else []),
            "threads": self._threads.threads if self._threads else None,
            "threads_alone": (self._threads.cores if self._threads and self.boosted is not None
                              and self.boosted.wide_backends else None),
            "torch_threads": _torch_threads_now(),
            "preprocess": self._fused_note or "the handler's own",
            "buckets": (rep.candidate(rep.chosen).buckets
                        if rep and rep.candidate(rep.chosen) else None),
            "report": rep.to_dict() if rep else None,
            "pid": os.getpid(),
        }}

    def handle(self, data: list, context: Any) -> list:
        """Serve one TorchServe batch through the wrapped handler."""
        self.context = context
        if _header(context, 0, "describe") == "True":
            try:  # the wrapped handler's own describe wins where it has one
                inner_desc = self.inner.handle(data, context)
            except Exception:  # noqa: BLE001 - a handler without describe support
                inner_desc = None
            if inner_desc and inner_desc[0] is not None:
                return inner_desc
            return [json.dumps(self.describe())]
        try:
            return self._handle(data, context)
        except Exception as exc:
            if len(data) > 1:  # one request may have broken the batch: it fails alone
                return self._isolate(data, context)
            if isinstance(exc, RequestRejected):
                logger.info("%s: request rejected (400): %s", self.model_name, exc)
                raise prediction_exception(str(exc), 400) from exc
            raise

    def _handle(self, data: list, context: Any) -> list:
        """Serve through the wrapped handler; any error becomes its status (``status_of``)."""
        try:
            return self.inner.handle(data, context)
        except RequestRejected:
            raise
        except Exception as exc:
            if is_prediction_exception(exc):  # the wrapped handler chose its status
                raise
            raise self._error_response(exc) from exc

    def _error_response(self, exc: Exception) -> Exception:
        """The PredictionException TorchServe answers ``exc`` with; 4xx logged briefly."""
        status = serving.status_of(exc)
        message = status.message
        if isinstance(exc, YellowstoneError):
            message = f"{type(exc).__name__}: {message}"
        if status.client_fault:
            logger.warning("%s: bad request (%d): %s", self.model_name, status.http, message)
        else:
            logger.error("%s: request failed (%d): %s", self.model_name, status.http, message,
                         exc_info=exc)
        return prediction_exception(message, status.http)


def _header(context: Any, idx: int, key: str) -> Any:
    try:
        return context.get_request_header(idx, key)
    except Exception:  # noqa: BLE001 - no request processor (offline use)
        return None


def _torch_threads_now() -> int | None:
    """The intra-op thread count of torch, where torch is loaded."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Give torch ``threads`` intra-op threads for the block, then one again."""
    import torch

    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(1)


def _all_uint8(args: tuple) -> bool:
    """True when every argument is a uint8 tensor (the fused model's pixels)."""
    return bool(args) and all(str(getattr(a, "dtype", "")) == "torch.uint8" for a in args)


def _cpu_feeds(names: tuple[str, ...], args: tuple) -> dict | None:
    """Named numpy views of CPU tensors (no copy), or None when an argument is anything else."""
    import torch

    feeds = {}
    for name, arg in zip(names, args):
        if (type(arg) is not torch.Tensor or arg.device.type != "cpu" or arg.requires_grad
                or arg.dtype == torch.bfloat16):
            return None
        feeds[name] = arg.numpy()
    return feeds
