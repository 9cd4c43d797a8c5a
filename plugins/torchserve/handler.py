"""The boost handler: run a TorchServe handler as written, with only its model's forward boosted.

:class:`BoostHandler` loads the handler named in the ``yellowstone:`` section of
model-config.yaml (a built-in or the user's own file), lets it ``initialize`` as usual, then
swaps ``handler.model`` for a thin module that calls :func:`yellowstone.boost`'s result. The
wrapped handler's ``preprocess``, ``inference`` and ``postprocess`` run unchanged. Requests the
wrapped handler rejects become TorchServe 4xx error responses; the worker keeps serving.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yellowstone.errors import BadRequestError, ConfigError, ModelLoadError, YellowstoneError

from .config import SECTION, PluginConfig, parse_section
from .metrics import MetricsBridge

logger = logging.getLogger(__name__)


class RequestRejected(Exception):
    """The wrapped handler's ``preprocess`` refused a request (the client's error)."""


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


class _SubsetContext:
    """The worker context seen through a subset of the batch (index i -> original index)."""

    def __init__(self, context: Any, indices: Sequence[int]):
        self._context = context
        self._indices = list(indices)
        ids = context.request_ids or {}
        self.request_ids = {j: ids.get(i) for j, i in enumerate(self._indices)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def get_request_id(self, idx: int = 0) -> Any:
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._context.get_request_header(self._indices[idx], key)

    def get_all_request_header(self, idx: int) -> Any:
        return self._context.get_all_request_header(self._indices[idx])

    def set_response_content_type(self, idx: int, value: str) -> None:
        self._context.set_response_content_type(self._indices[idx], value)

    def get_response_content_type(self, idx: int) -> Any:
        return self._context.get_response_content_type(self._indices[idx])

    def get_response_headers(self, idx: int) -> Any:
        return self._context.get_response_headers(self._indices[idx])

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._context.set_response_header(self._indices[idx], key, value)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self._context.set_response_status(code, phrase, self._indices[idx])


# ------------------------------------------------------------------------------------------
# what replaces handler.model
# ------------------------------------------------------------------------------------------
def _boosted_module_class() -> type:
    import torch

    class BoostedModule(torch.nn.Module):
        """Stands in for ``handler.model``: forward runs the boosted model.

        Attributes the handler reads from its model (``.fc``, ``.embedding``, ``.training``) are
        the original's; the original stays registered as ``original`` so ``.to()``/``.eval()``
        and captum explanations keep working on it.
        """

        def __init__(self, original: Any, plugin: BoostHandler):
            super().__init__()
            self.original = original
            object.__setattr__(self, "_plugin", plugin)

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._modules["original"], name)

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self._plugin._call_boosted(args, kwargs)

    return BoostedModule


class BoostedOrtSession:
    """Stands in for the ONNX Runtime session BaseHandler builds for ``.onnx`` models.

    Keeps the session API handlers use (``run``, ``get_inputs``, ``get_outputs``) and is also
    callable with torch tensors, so BaseHandler's own ``inference`` works on ONNX models too.
    """

    def __init__(self, session: Any, plugin: BoostHandler):
        self._session = session
        self._plugin = plugin

    def get_inputs(self) -> Any:
        """The original session's input descriptions."""
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        """The original session's output descriptions."""
        return self._session.get_outputs()

    def run(self, output_names: Sequence[str] | None, input_feed: dict, run_options: Any = None) -> list:
        """Run like ``InferenceSession.run``: named numpy feeds in, numpy outputs out."""
        import numpy as np

        boosted = self._plugin._ensure_boosted(
            tuple(input_feed[n] for n in [i.name for i in self.get_inputs()] if n in input_feed),
            {})
        outs = boosted.run_dict({k: np.asarray(v) for k, v in input_feed.items()})
        names = list(output_names) if output_names else list(boosted.output_names)
        return [outs[n] for n in names]

    def __call__(self, *args: Any) -> Any:
        return self._plugin._call_boosted(args, {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


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
        self._bridge: MetricsBridge | None = None

    # -- load --------------------------------------------------------------------------------
    def initialize(self, context: Any) -> None:
        """Initialize the wrapped handler, then boost its model (or schedule it for request 1)."""
        import yellowstone

        self.context = context
        self.model_name = getattr(context, "model_name", None) or "model"
        props = context.system_properties
        self.model_dir = Path(props.get("model_dir") or ".")
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.settings = parse_section(yaml_config.get(SECTION))
        boost_opts = dict(self.settings.boost)
        if "batch_sizes" not in boost_opts:
            batch = int(props.get("batch_size") or yaml_config.get("batchSize") or 1)
            boost_opts["batch_sizes"] = sorted({1, batch})
        if "workers" not in boost_opts and "threads" not in boost_opts:
            boost_opts["workers"] = _worker_count(yaml_config)
        self.boost_config = yellowstone.BoostConfig.from_dict(boost_opts)
        self._share_cores()
        self._bridge = MetricsBridge(lambda: self.context, lambda: self.backend)
        yellowstone.metrics.add_listener(self._bridge)

        handler_cls = load_handler_class(self.settings.handler)
        logger.info("%s: boosting handler %s.%s", self.model_name, handler_cls.__module__,
                    handler_cls.__qualname__)
        self.inner = handler_cls()
        self._init_inner(context)
        self._wrap_preprocess()

        model = getattr(self.inner, "model", None)
        if model is None:
            raise ModelLoadError(f"handler {self.settings.handler!r} did not set self.model in "
                                 "initialize(); the boost handler needs it to boost")
        self._original = model
        self._classify_model(model)
        if self._form == "onnx":
            self.inner.model = BoostedOrtSession(model, self)
        else:
            self.inner.model = _boosted_module_class()(model, self)
        if self.settings.inputs:
            self._ensure_boosted(self._example_inputs(), {})
        else:
            logger.info("%s: no input_shape in the '%s' section; the model is boosted on the "
                        "first request's preprocessed input", self.model_name, SECTION)
        self.initialized = True

    def _share_cores(self) -> None:
        """Give torch this worker's share of the cores, as TorchServe's performance guide advises.

        Several workers each running torch (the handler's preprocessing, ``native``) on all
        cores spin in each other's way; the backends get the same share from the core.
        """
        threads = self.boost_config.effective_threads
        if not threads:
            return
        import torch

        if torch.get_num_threads() != threads:
            logger.info("%s: %d workers on %d cores: torch and the backends use %d thread(s) "
                        "per worker (set yellowstone.threads to override)", self.model_name,
                        self.boost_config.workers, _cores(), threads)
            torch.set_num_threads(threads)

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

    def _example_inputs(self) -> tuple:
        import numpy as np
        import torch

        rng = np.random.default_rng()
        out = []
        for spec in self.settings.inputs:
            if np.dtype(spec.dtype).kind in "iub":
                arr = rng.integers(0, 2, size=spec.shape).astype(spec.dtype)
            else:
                arr = rng.standard_normal(spec.shape).astype(spec.dtype)
            out.append(arr if self._form == "onnx" else torch.from_numpy(arr))
        return tuple(out)

    def _artifact_dir(self) -> Path | None:
        if not self.settings.artifact_dir:
            return None
        path = self.model_dir / self.settings.artifact_dir
        if not path.is_dir():
            logger.warning("%s: artifact_dir %s is not in the archive; compiling here",
                           self.model_name, path)
            self._bridge.emit("YellowstoneFallbacks", "counter", 1, "count",
                              {"backend": "artifact", "reason": "artifact-missing"})
            return None
        return path

    def _ensure_boosted(self, args: tuple, kwargs: dict) -> Any:
        """Boost on first use (or at initialize when example inputs are configured)."""
        if self.boosted is not None:
            return self.boosted
        import yellowstone

        if self._form in ("onnx", "pt2") and self._model_path is not None:
            model: Any = str(self._model_path)
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
        t0 = time.perf_counter()
        try:
            self.boosted = yellowstone.boost(model, example, config=self.boost_config,
                                             artifact_dir=self._artifact_dir())
        except BadRequestError:
            raise
        except YellowstoneError as exc:
            logger.warning("%s: boosting failed (%s); serving on native", self.model_name, exc)
            self._bridge.emit("YellowstoneFallbacks", "counter", 1, "count",
                              {"backend": "all", "reason": "boost-error"})
            self.boosted = yellowstone.boost(model, example, config=self.boost_config,
                                             backends="native")
        self._bridge.flush()
        report = self.boosted.report
        source = {"artifact": "precompiled archive", "hit": "cache"}.get(report.cache, "compiled here")
        logger.info("%s: served by backend %s (%s, %.2f s, handler %s)%s", self.model_name,
                    self.boosted.backend, source, time.perf_counter() - t0,
                    self.settings.handler,
                    f"; fallback: {report.fallback_reason}" if report.fallback_reason else "")
        return self.boosted

    def _call_boosted(self, args: tuple, kwargs: dict) -> Any:
        boosted = self._ensure_boosted(args, kwargs)
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
                if _is_prediction_exception(exc):
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
            "threads": self.boost_config.effective_threads if self.boost_config else None,
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
        except RequestRejected as exc:
            if len(data) > 1:
                return self._handle_rows(data, context)
            raise _prediction_exception(str(exc), 400) from exc

    def _handle(self, data: list, context: Any) -> list:
        try:
            return self.inner.handle(data, context)
        except RequestRejected:
            raise
        except YellowstoneError as exc:
            raise _prediction_exception(f"{type(exc).__name__}: {exc}", exc.http_status) from exc

    def _handle_rows(self, data: list, context: Any) -> list:
        """A batch the handler rejected: find the bad requests, serve the others."""
        bad: dict[int, str] = {}
        for i, row in enumerate(data):
            try:
                self.inner.preprocess([row])
            except RequestRejected as exc:
                bad[i] = str(exc)
        good = [i for i in range(len(data)) if i not in bad]
        logger.info("%s: batch of %d: preprocess rejected %d request(s); serving the other %d",
                    self.model_name, len(data), len(bad), len(good))
        results: list[Any] = [None] * len(data)
        if good:
            try:
                served = self._handle([data[i] for i in good], _SubsetContext(context, good))
            except RequestRejected as exc:  # the rows only fail together: fail them all
                raise _prediction_exception(str(exc), 400) from exc
            for i, value in zip(good, served):
                results[i] = value
        for i, message in bad.items():
            context.set_response_status(400, message[:200], i)
            results[i] = json.dumps({"code": 400, "type": "BadRequest", "message": message})
        return results


def _cores() -> int:
    from yellowstone.hardware import available_cores

    return available_cores()


def _worker_count(yaml_config: dict) -> int:
    """Workers TorchServe runs for this model.

    ``minWorkers``, else TorchServe's default on a CPU host: one per logical processor
    (``default_workers_per_model`` unset).
    """
    try:
        return max(1, int(yaml_config.get("minWorkers") or 0) or _cores())
    except (TypeError, ValueError):
        return _cores()


def _header(context: Any, idx: int, key: str) -> Any:
    try:
        return context.get_request_header(idx, key)
    except Exception:  # noqa: BLE001 - no request processor (offline use)
        return None


def _is_prediction_exception(exc: BaseException) -> bool:
    try:
        from ts.utils.util import PredictionException
    except ImportError:
        return False
    return isinstance(exc, PredictionException)


def _prediction_exception(message: str, code: int) -> Exception:
    from ts.utils.util import PredictionException

    return PredictionException(message, code)
