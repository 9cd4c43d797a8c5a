"""The framework interposer: boost models that plain Python code loads, with no code change.

``yellowstone run app.py`` (or ``YELLOWSTONE_INTERPOSE=1`` with the ``.pth`` hook installed)
replaces a few framework loaders with wrappers, each patched only once the application itself
imports the framework (a ``sys.meta_path`` finder patches a module right after it is first
executed, so this module never imports torch or TensorFlow on its own):

    keras.models.load_model / tf.keras.models.load_model   -> model proxy (predict, __call__, ...)
    tf.saved_model.load                                    -> proxy whose signatures are boosted
    torch.jit.load, torch.export.load, torch.load (module) -> module proxy (eval, no-grad forward)

A proxy forwards every attribute to the original object and boosts lazily: the first eligible
call (inference, no gradients, plain tensors) is the example for ``yellowstone.boost``; later
calls run on the chosen backend, and a call the boosted model rejects (BadRequestError) runs on
the original. When boosting fails the original serves, with one WARNING naming the reason.
``uninstall()`` (or ``YELLOWSTONE_INTERPOSE=0``) puts the original functions back.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import functools
import importlib.abc
import importlib.util
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)

PTH_NAME = "yellowstone-interpose.pth"
PTH_LINE = ("import os; os.environ.get('YELLOWSTONE_INTERPOSE', '').strip() == '1' "
            "and __import__('yellowstone.interpose_hook')\n")


# ==========================================================================================
# The interposable APIs: a cheap table, nothing imported
# ==========================================================================================
@dataclasses.dataclass(frozen=True)
class Api:
    """One interposable loader.

    Attributes:
        name: the public spelling users select it by (``YELLOWSTONE_INTERPOSE_APIS``).
        distribution: the package that provides it (for ``--dry-run``).
        root: the top-level module; nothing is patched before the application imports it.
        targets: ``(module name, attribute)`` pairs holding the function; each is replaced.
        kind: which proxy wraps what the loader returns.
    """

    name: str
    distribution: str
    root: str
    targets: tuple[tuple[str, str], ...]
    kind: str


APIS: tuple[Api, ...] = (
    Api("keras.models.load_model", "keras", "keras",
        (("keras.models", "load_model"), ("keras.saving", "load_model"),
         ("keras._tf_keras.keras.models", "load_model")), "keras"),
    Api("tf.saved_model.load", "tensorflow", "tensorflow",
        (("tensorflow.saved_model", "load"),), "saved_model"),
    Api("torch.jit.load", "torch", "torch", (("torch.jit", "load"),), "torch"),
    Api("torch.export.load", "torch", "torch", (("torch.export", "load"),), "exported_program"),
    Api("torch.load", "torch", "torch", (("torch", "load"),), "torch_load"),
)
ALIASES = {"tf.keras.models.load_model": "keras.models.load_model",
           "keras.saving.load_model": "keras.models.load_model",
           "tensorflow.saved_model.load": "tf.saved_model.load"}


def api_names() -> list[str]:
    """Names accepted in ``apis`` / ``YELLOWSTONE_INTERPOSE_APIS``."""
    return [a.name for a in APIS]


def select_apis(spec: str | Sequence[str] | None) -> tuple[Api, ...]:
    """The APIs named in ``spec`` (comma-separated or a list; empty or ``all`` = every one)."""
    if spec is None:
        return APIS
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)
             if str(s).strip()]
    if not names or names == ["all"]:
        return APIS
    by_name = {a.name: a for a in APIS}
    chosen, unknown = [], []
    for n in names:
        api = by_name.get(ALIASES.get(n, n))
        if api is None:
            unknown.append(n)
        elif api not in chosen:
            chosen.append(api)
    if unknown:
        raise ConfigError(f"unknown interposable API(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(api_names() + sorted(ALIASES))}")
    return tuple(chosen)


# ==========================================================================================
# Configuration: YELLOWSTONE_* env < config file < explicit arguments
# ==========================================================================================
@dataclasses.dataclass(frozen=True, kw_only=True)
class InterposeSettings:
    """What to interpose and how to boost.

    Attributes:
        apis: the loaders to replace.
        boost: BoostConfig fields from the config file (the environment is read by the core).
        batch_sizes_set: batch sizes were configured; otherwise each model is benchmarked at
            the batch size of its first call.
        report_path: where to write every model's report at exit (and after each boost).
    """

    apis: tuple[Api, ...] = APIS
    boost: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_sizes_set: bool = False
    report_path: str | None = None

    def boost_config(self) -> Any:
        """The BoostConfig for one model: environment, then the config file over it."""
        from .config import BoostConfig, resolve_config

        return resolve_config(BoostConfig.from_dict(dict(self.boost), base=BoostConfig.from_env()))


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``yellowstone.yaml`` (or JSON): ``apis`` plus BoostConfig fields."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    if p.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping, got {type(data).__name__}")
    return data


def settings_from(environ: Mapping[str, str] | None = None, *, config_file: str | None = None,
                  apis: str | None = None, report_path: str | None = None) -> InterposeSettings:
    """Resolve settings: explicit arguments > config file > YELLOWSTONE_* environment."""
    from .config import BoostConfig

    env = os.environ if environ is None else environ
    config_file = config_file or env.get("YELLOWSTONE_CONFIG") or None
    data = read_config_file(config_file) if config_file else {}
    file_apis = data.pop("apis", None)
    BoostConfig.from_dict(data)  # reject unknown keys / bad values now, listing valid ones
    chosen = select_apis(apis if apis is not None else
                         file_apis if file_apis is not None else
                         env.get("YELLOWSTONE_INTERPOSE_APIS"))
    return InterposeSettings(
        apis=chosen, boost=data,
        batch_sizes_set="batch_sizes" in data or bool(env.get("YELLOWSTONE_BATCH_SIZES")),
        report_path=report_path or env.get("YELLOWSTONE_INTERPOSE_REPORT") or None)


# ==========================================================================================
# State: what is patched, every proxy made, a re-entrancy guard
# ==========================================================================================
_lock = threading.RLock()
_tls = threading.local()
_settings: InterposeSettings | None = None
_patched: dict[tuple[int, str], tuple[Any, str, Any, str]] = {}  # (id(owner), attr) -> ...
_proxies: list[_Boostable] = []
_finder: _PatchOnImport | None = None


@contextlib.contextmanager
def _inside() -> Iterator[None]:
    """Calls to patched loaders from here (the core, a loader itself) go to the originals."""
    depth = getattr(_tls, "depth", 0)
    _tls.depth = depth + 1
    try:
        yield
    finally:
        _tls.depth = depth


def _is_inside() -> bool:
    return getattr(_tls, "depth", 0) > 0


def is_installed() -> bool:
    """True while the interposer is installed."""
    return _settings is not None


def patched_functions() -> dict[str, Any]:
    """``{"module.attr": original function}`` for every attribute replaced now."""
    with _lock:
        return {f"{mod}.{attr}": orig for _, (_, attr, orig, mod) in _patched.items()}


# ==========================================================================================
# Install / uninstall
# ==========================================================================================
def install(settings: InterposeSettings | None = None) -> bool:
    """Install the interposer (idempotent); ``YELLOWSTONE_INTERPOSE=0`` makes this a no-op.

    Loaders of frameworks already imported are patched now; the others when the application
    first imports them.
    """
    global _settings, _finder
    if os.environ.get("YELLOWSTONE_INTERPOSE", "").strip() == "0":
        logger.info("yellowstone: YELLOWSTONE_INTERPOSE=0: the interposer stays off")
        return False
    with _lock:
        if _settings is not None:
            return True
        _settings = settings or settings_from()
        watched = {a.root for a in _settings.apis} | {m for a in _settings.apis
                                                      for m, _ in a.targets}
        _finder = _PatchOnImport(watched)
        sys.meta_path.insert(0, _finder)
        _patch_available()
    if _settings.report_path:
        atexit.register(write_report, _settings.report_path)
    return True


def install_from_env() -> bool:
    """Install with settings from YELLOWSTONE_* (the ``.pth`` hook's entry point)."""
    return install(settings_from())


def uninstall() -> None:
    """Put every original function back and stop patching on import.

    Proxies already handed to the application keep working (they stop boosting nothing).
    """
    global _settings, _finder
    with _lock:
        for owner, attr, original, _ in list(_patched.values()):
            if vars(owner).get(attr) is not original:
                setattr(owner, attr, original)
        _patched.clear()
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None
        _settings = None


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of watched modules to patch after exec."""

    def __init__(self, names: set[str]):
        self.names = names
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then patches whatever the new module makes available."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self._loader  # the module sees its real loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _patch_available()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _resolve_owner(module_name: str) -> Any:
    """The object holding a target attribute, if already imported; never imports anything."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    root, *rest = module_name.split(".")
    obj = sys.modules.get(root)
    for part in rest:  # e.g. tensorflow.saved_model lives as tensorflow._api.v2.saved_model
        if obj is None:
            return None
        try:
            obj = vars(obj).get(part)
        except TypeError:
            return None
    return obj


def _patch_available() -> None:
    with _lock:
        if _settings is None:
            return
        for api in _settings.apis:
            for module_name, attr in api.targets:
                owner = _resolve_owner(module_name)
                if owner is None:
                    continue
                try:
                    current = vars(owner).get(attr)
                except TypeError:
                    continue
                if current is None or getattr(current, "__yellowstone_api__", None):
                    continue
                setattr(owner, attr, _make_wrapper(api, current))
                _patched[(id(owner), attr)] = (owner, attr, current, module_name)
                logger.debug("yellowstone: interposed %s.%s", module_name, attr)


def _make_wrapper(api: Api, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def loader(*args: Any, **kwargs: Any) -> Any:
        if _is_inside() or _settings is None:
            return original(*args, **kwargs)
        with _inside():
            obj = original(*args, **kwargs)
        try:
            return _wrap(api, obj, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - never break the application's load
            logger.warning("yellowstone: %s model not boosted (%s: %s); the original serves",
                           api.name, type(exc).__name__, exc)
            return obj

    loader.__yellowstone_api__ = api.name  # type: ignore[attr-defined]
    return loader


def _source_of(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    first = args[0] if args else next(iter(kwargs.values()), None)
    if isinstance(first, (str, os.PathLike)):
        return os.fspath(first)
    return type(first).__name__ if first is not None else "?"


def _wrap(api: Api, obj: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    source = _source_of(args, kwargs)
    if api.kind == "keras":
        return KerasProxy(obj, api=api.name, source=source)
    if api.kind == "saved_model":
        path = args[0] if args else kwargs.get("export_dir")
        return SavedModelProxy(obj, api=api.name, source=source, path=path)
    torch: Any = sys.modules.get("torch")
    if api.kind == "exported_program":
        if torch is not None and isinstance(obj, torch.export.ExportedProgram):
            return ExportedProgramProxy(obj, api=api.name, source=source)
        return obj
    if torch is not None and isinstance(obj, torch.nn.Module):
        return TorchModuleProxy(obj, api=api.name, source=source)
    return obj  # torch.load of a state dict, a tensor, ...: untouched


# ==========================================================================================
# Proxies
# ==========================================================================================
class _Capture(logging.Filter):
    """Holds back the core's WARNINGs raised while one thread boosts (re-logged afterwards)."""

    def filter(self, record: logging.LogRecord) -> bool:
        held = getattr(_tls, "held", None)
        if held is not None and record.levelno >= logging.WARNING:
            held.append(record)
            return False
        return True


_CAPTURE = _Capture()


def _attach_capture() -> None:
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if (name.startswith("yellowstone.") and name != __name__
                and isinstance(lg, logging.Logger) and _CAPTURE not in lg.filters):
            lg.addFilter(_CAPTURE)


class _Boostable:
    """Lazy boost state shared by every proxy: one boost, counters, the report."""

    def __init__(self, api: str, source: str):
        self.api = api
        self.source = source
        self.boosted: Any = None
        self.state = "pending"  # pending | boosting | boosted | native | failed
        self.reason = ""
        self.calls = {"boosted": 0, "original": 0, "rejected": 0}
        self._lock = threading.Lock()
        with _lock:
            _proxies.append(self)

    def reset(self, why: str) -> None:
        """Forget the boosted model (weights or mode changed); the next eligible call re-boosts."""
        with self._lock:
            if self.state in ("boosted", "native"):
                logger.info("yellowstone: %s model changed (%s); it is boosted again on its "
                            "next inference call", self.api, why)
                self.boosted, self.state = None, "pending"

    def get(self, make: Callable[[], Any]) -> Any:
        """The boosted model, boosting now if this is the first eligible call; None = original."""
        if self.state == "boosted":
            boosted = self.boosted
            return boosted if boosted is not None and boosted.backend != "native" else None
        if self.state != "pending" or not self._lock.acquire(blocking=False):
            return None  # failed, native, or another thread is boosting: the original serves
        try:
            if self.state != "pending":
                return self.get(make) if self.state == "boosted" else None
            self.state = "boosting"
            self._boost(make)
        finally:
            self._lock.release()
        return self.get(make) if self.state == "boosted" else None

    def _boost(self, make: Callable[[], Any]) -> None:
        from . import engine  # noqa: F401 - creates the core's loggers before capturing

        _attach_capture()
        held: list[logging.LogRecord] = []
        _tls.held = held
        try:
            with _inside():
                boosted = make()
        except Exception as exc:  # noqa: BLE001 - any failure: the original keeps serving
            self.state, self.reason = "failed", f"{type(exc).__name__}: {exc}"
            logger.warning("yellowstone: %s model %s not boosted (%s); the original serves",
                           self.api, self.source, self.reason)
            return
        finally:
            _tls.held = None
        self.boosted = boosted
        report = boosted.report
        if boosted.backend == "native":
            self.state = "native"
            self.reason = report.fallback_reason or "native is the fastest here"
            level = logging.WARNING if report.fallback_reason else logging.INFO
            logger.log(level, "yellowstone: %s model %s not boosted (%s); the original serves",
                       self.api, self.source, self.reason)
        else:
            self.state = "boosted"
            speed = f"{report.speedup:.2f}x native" if report.speedup else "speedup unknown"
            logger.info("yellowstone: %s model served by %s (%s)", self.api, boosted.backend,
                        speed)
        for record in held:  # the core's per-candidate warnings, as detail
            logger.info("yellowstone: detail: %s", record.getMessage())
        if _settings is not None and _settings.report_path:
            write_report(_settings.report_path)

    def count(self, key: str) -> None:
        with self._lock:
            self.calls[key] += 1

    def to_dict(self) -> dict[str, Any]:
        """One model's entry in the ``--report`` file."""
        report = self.boosted.report if self.boosted is not None else None
        return {"api": self.api, "source": self.source, "state": self.state,
                "backend": (self.boosted.backend if self.boosted is not None else "original"),
                "speedup": report.speedup if report else None, "reason": self.reason,
                "calls": dict(self.calls), "report": report.to_dict() if report else None}


class _Proxy:
    """Forwards every attribute to the original; methods returning the original return the proxy.

    ``isinstance(proxy, type(original))`` holds (``__class__`` answers the original's class);
    ``__wrapped__`` is the original object.
    """

    _ys_mutators: frozenset[str] = frozenset()

    def __init__(self, original: Any, *, api: str, source: str):
        object.__setattr__(self, "_ys_original", original)
        object.__setattr__(self, "_ys", _Boostable(api, source))

    # -- identity ------------------------------------------------------------------------
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(object.__getattribute__(self, "_ys_original"))

    @property
    def __wrapped__(self) -> Any:
        return self._ys_original

    @property
    def yellowstone_report(self) -> Any:
        """The core Report of the boosted model (None until the first eligible call)."""
        b = self._ys.boosted
        return b.report if b is not None else None

    @property
    def yellowstone_state(self) -> dict[str, Any]:
        """Boost state, reason and call counters (also in the ``--report`` file)."""
        return self._ys.to_dict()

    # -- forwarding ------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_ys"):  # not set yet (copy, unpickling): never recurse
            raise AttributeError(name)
        value = getattr(self._ys_original, name)
        if callable(value) and getattr(value, "__self__", None) is self._ys_original:
            return self._ys_method(name, value)
        return value

    def _ys_method(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self._ys_mutators:
                self._ys.reset(f".{name}() was called")
            result = method(*args, **kwargs)
            return self if result is self._ys_original else result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ys_original, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._ys_original, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._ys_original)) | {"yellowstone_report", "yellowstone_state"})

    def __repr__(self) -> str:
        return repr(self._ys_original)

    def __str__(self) -> str:
        return str(self._ys_original)

    def __len__(self) -> int:
        return len(self._ys_original)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ys_original)

    def __getitem__(self, key: Any) -> Any:
        return self._ys_original[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._ys_original

    def __bool__(self) -> bool:
        return bool(self._ys_original)

    def _ys_config(self, batch: int | None) -> Any:
        settings = _settings or InterposeSettings()
        cfg = settings.boost_config()
        if batch and not settings.batch_sizes_set:
            from .config import BoostConfig

            cfg = BoostConfig.from_dict({"batch_sizes": (batch,)}, base=cfg)
        return cfg

    def _ys_original_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._ys.count("original")
        return fn(*args, **kwargs)


def _batch_of(values: Sequence[Any]) -> int | None:
    shapes = [tuple(v.shape) for v in values if getattr(v, "shape", None) is not None]
    return int(shapes[0][0]) if shapes and shapes[0] else None


# -- torch ------------------------------------------------------------------------------
_TORCH_MUTATORS = frozenset({"to", "cpu", "cuda", "half", "float", "double", "bfloat16", "type",
                             "load_state_dict", "apply", "_apply", "train", "to_empty",
                             "requires_grad_", "share_memory"})


class TorchModuleProxy(_Proxy):
    """A loaded ``nn.Module``/TorchScript module: eval-mode, no-grad forward calls are boosted.

    Anything else (training mode, gradients enabled, hooks, non-tensor or non-CPU arguments)
    calls the original module. ``.to()``, ``.train()``, ``.load_state_dict()`` and the like
    forget the boosted model; the next eligible call boosts again (the cache makes it cheap).
    """

    _ys_mutators = _TORCH_MUTATORS

    def __init__(self, original: Any, *, api: str, source: str, program: Any = None):
        super().__init__(original, api=api, source=source)
        object.__setattr__(self, "_ys_program", program)  # torch.export: boost the program
        # torch.export's module() installs its own input-check pre-hook: only later hooks count
        object.__setattr__(self, "_ys_own_hooks", frozenset(
            ("pre", k) for k in getattr(original, "_forward_pre_hooks", {}) if program is not None
        ) | frozenset(("post", k) for k in getattr(original, "_forward_hooks", {})
                      if program is not None))

    def _ys_ineligible(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        torch: Any = sys.modules["torch"]
        module = self._ys_original
        if torch.is_grad_enabled():
            return "gradients enabled"
        if self._ys_program is None and getattr(module, "training", False):
            return "training mode"
        if args and kwargs:
            return "mixed positional and keyword arguments"
        values = list(args) + list(kwargs.values())
        if not values:
            return "no inputs"
        for v in values:
            if not isinstance(v, torch.Tensor) or v.device.type != "cpu" or v.requires_grad \
                    or v.dtype in (torch.bfloat16, torch.complex64, torch.complex128):
                return "non-tensor, non-CPU or gradient-tracking argument"
        hooks = {("pre", k) for k in getattr(module, "_forward_pre_hooks", None) or ()} | \
            {("post", k) for k in getattr(module, "_forward_hooks", None) or ()}
        if hooks - self._ys_own_hooks:
            return "forward hooks"
        return ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self._ys_original
        if self._ys_ineligible(args, kwargs):
            return self._ys_original_call(module, *args, **kwargs)
        from . import engine

        example = dict(kwargs) if kwargs else tuple(args)
        program = self._ys_program
        cfg = self._ys_config(_batch_of(list(args) + list(kwargs.values())))

        def make() -> Any:
            boosted = engine.boost(program if program is not None else module, example,
                                   config=cfg)
            if program is not None and cfg.dynamic_batch and boosted.backend == "native" and \
                    any("torch.export failed" in c.reason for c in boosted.report.candidates):
                # The core re-exports with its own batch range, which a program saved with a
                # narrower one rejects ("Constraints violated"): use batch buckets instead.
                from .config import BoostConfig

                boosted = engine.boost(program, example, config=BoostConfig.from_dict(
                    {"dynamic_batch": False}, base=cfg))
            return boosted

        boosted = self._ys.get(make)
        if boosted is None:
            return self._ys_original_call(module, *args, **kwargs)
        return _call_boosted(self, boosted, module, args, kwargs)


def _call_boosted(proxy: _Proxy, boosted: Any, original: Callable[..., Any],
                  args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    from .errors import BadRequestError

    try:
        out = boosted(*args, **kwargs)
    except BadRequestError as exc:
        logger.debug("yellowstone: %s: boosted model rejects this call (%s); original serves",
                     proxy._ys.api, exc)
        proxy._ys.count("rejected")
        return proxy._ys_original_call(original, *args, **kwargs)
    proxy._ys.count("boosted")
    return out


class ExportedProgramProxy(_Proxy):
    """A ``torch.export`` program: ``.module()`` returns a boosted module proxy."""

    def module(self, *args: Any, **kwargs: Any) -> Any:
        gm = self._ys_original.module(*args, **kwargs)
        proxy = TorchModuleProxy(gm, api=self._ys.api, source=self._ys.source,
                                 program=self._ys_original)
        with _lock:  # the program itself is never called: report the module's boost only
            if self._ys in _proxies:
                _proxies.remove(self._ys)
        return proxy


# -- Keras ------------------------------------------------------------------------------
_KERAS_MUTATORS = frozenset({"fit", "train_on_batch", "set_weights", "load_weights"})


class KerasProxy(_Proxy):
    """A loaded Keras model: ``predict``, ``predict_on_batch`` and ``__call__`` are boosted.

    Inputs are numpy arrays or tensors (a list of them for multi-input models), cast to the
    model's input dtypes as Keras does; ``training=True``, masks, datasets, generators,
    callbacks and dict outputs go to the original model.
    """

    _ys_mutators = _KERAS_MUTATORS

    def _ys_feeds(self, x: Any) -> list[Any] | None:
        import numpy as np

        km = self._ys_original
        try:
            inputs = list(km.inputs)
            if isinstance(km.output, Mapping):
                return None
        except Exception:  # noqa: BLE001 - unbuilt/subclassed models: not boosted
            return None
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(inputs):
            return None
        feeds = []
        for value, t in zip(xs, inputs):
            if not (isinstance(value, np.ndarray) or type(value).__module__.startswith("tensorflow")
                    and hasattr(value, "numpy")):
                return None
            arr = np.asarray(value)
            want = np.dtype(getattr(t.dtype, "name", t.dtype))
            if arr.dtype != want:
                if arr.dtype.kind != want.kind or arr.dtype.kind not in "fiu":
                    return None
                arr = arr.astype(want)
            feeds.append(arr)
        return feeds

    def _ys_boosted(self, feeds: list[Any]) -> Any:
        from . import engine

        return self._ys.get(lambda: engine.boost(self._ys_original, tuple(feeds),
                                                 config=self._ys_config(_batch_of(feeds))))

    def _ys_run(self, boosted: Any, feeds: list[Any]) -> list[Any]:
        return boosted.run({s.name: a for s, a in zip(boosted.inputs, feeds)})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        km = self._ys_original
        extra = {k: v for k, v in kwargs.items() if not (k == "training" and not v)}
        feeds = self._ys_feeds(args[0]) if len(args) == 1 and not extra else None
        boosted = self._ys_boosted(feeds) if feeds is not None else None
        if feeds is None or boosted is None:
            return self._ys_original_call(km, *args, **kwargs)
        import tensorflow as tf

        from .errors import BadRequestError

        try:
            outs = self._ys_run(boosted, feeds)
        except BadRequestError:
            self._ys.count("rejected")
            return self._ys_original_call(km, *args, **kwargs)
        self._ys.count("boosted")
        tensors = [tf.constant(o) for o in outs]
        return tensors[0] if len(tensors) == 1 else tensors

    def predict(self, x: Any = None, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None, **kwargs: Any) -> Any:
        """Keras ``predict``; arrays are run on the boosted model in ``batch_size`` chunks."""
        import numpy as np

        km = self._ys_original
        feeds = self._ys_feeds(x) if steps is None and callbacks is None and not kwargs else None
        size = int(batch_size or 32)
        boosted = self._ys_boosted([f[:size] for f in feeds]) if feeds is not None else None
        if feeds is None or boosted is None:
            return self._ys_original_call(km.predict, x, batch_size=batch_size, verbose=verbose,
                                          steps=steps, callbacks=callbacks, **kwargs)
        from .errors import BadRequestError

        n = int(feeds[0].shape[0])
        try:
            parts = [self._ys_run(boosted, [f[i:i + size] for f in feeds])
                     for i in range(0, n, size)]
        except BadRequestError:
            self._ys.count("rejected")
            return self._ys_original_call(km.predict, x, batch_size=batch_size, verbose=verbose,
                                          steps=steps, callbacks=callbacks, **kwargs)
        self._ys.count("boosted")
        outs = [np.concatenate(o) for o in zip(*parts)]
        return outs[0] if len(outs) == 1 else outs

    def predict_on_batch(self, x: Any) -> Any:
        """Keras ``predict_on_batch`` on the boosted model."""
        km = self._ys_original
        feeds = self._ys_feeds(x)
        boosted = self._ys_boosted(feeds) if feeds is not None else None
        if feeds is None or boosted is None:
            return self._ys_original_call(km.predict_on_batch, x)
        from .errors import BadRequestError

        try:
            outs = self._ys_run(boosted, feeds)
        except BadRequestError:
            self._ys.count("rejected")
            return self._ys_original_call(km.predict_on_batch, x)
        self._ys.count("boosted")
        return outs[0] if len(outs) == 1 else outs


# -- TF SavedModel ----------------------------------------------------------------------
class SavedModelProxy(_Proxy):
    """What ``tf.saved_model.load`` returned; ``.signatures[key](**tensors)`` is boosted."""

    def __init__(self, original: Any, *, api: str, source: str, path: Any):
        super().__init__(original, api=api, source=source)
        with _lock:  # the signatures carry the boosts, not the loaded object
            _proxies.remove(self._ys)
        object.__setattr__(self, "_ys_path", path)
        object.__setattr__(self, "_ys_signatures", None)

    @property
    def signatures(self) -> Any:
        """The signature map, each function boosted on its first call."""
        if self._ys_signatures is None:
            object.__setattr__(self, "_ys_signatures", _SignatureMap(self))
        return self._ys_signatures

    @property
    def yellowstone_report(self) -> Any:
        """The report of the ``serving_default`` signature (or the first boosted one)."""
        sigs = self._ys_signatures
        if sigs is None:
            return None
        fns = sorted(sigs._cache.items(), key=lambda kv: kv[0] != "serving_default")
        return next((f.yellowstone_report for _, f in fns if f.yellowstone_report), None)


class _SignatureMap(Mapping):  # type: ignore[type-arg]
    def __init__(self, owner: SavedModelProxy):
        self._owner = owner
        self._original = owner._ys_original.signatures
        self._cache: dict[str, SignatureProxy] = {}

    def __getitem__(self, key: str) -> Any:
        fn = self._original[key]
        if key not in self._cache:
            self._cache[key] = SignatureProxy(fn, api=self._owner._ys.api,
                                              source=f"{self._owner._ys.source}[{key}]",
                                              path=self._owner._ys_path, key=key)
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._original)

    def __len__(self) -> int:
        return len(self._original)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class SignatureProxy(_Proxy):
    """One SavedModel signature function: keyword tensor calls run on the boosted model."""

    def __init__(self, original: Any, *, api: str, source: str, path: Any, key: str):
        super().__init__(original, api=api, source=source)
        object.__setattr__(self, "_ys_path", path)
        object.__setattr__(self, "_ys_key", key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._ys_original
        ok = (not args and kwargs and self._ys_path is not None and all(
            hasattr(v, "shape") and hasattr(v, "dtype") for v in kwargs.values()))
        boosted = None
        if ok:
            from . import engine
            from .model import load_model

            def make() -> Any:
                handle = load_model(os.fspath(self._ys_path), dict(kwargs), signature=self._ys_key)
                return engine.boost(handle, config=self._ys_config(_batch_of(list(kwargs.values()))))

            boosted = self._ys.get(make)
        if boosted is None:
            return self._ys_original_call(fn, *args, **kwargs)
        return _call_boosted(self, boosted, fn, args, kwargs)


# ==========================================================================================
# Reports
# ==========================================================================================
def reports() -> list[dict[str, Any]]:
    """Every proxied model's state, backend, call counts and core report."""
    with _lock:
        proxies = list(_proxies)
    return [p.to_dict() for p in proxies]


def write_report(path: str | os.PathLike[str]) -> None:
    """Write ``{"pid", "interposed", "models"}`` as JSON to ``path`` (atomically)."""
    data = {"pid": os.getpid(), "interposed": sorted(patched_functions()), "models": reports()}
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, p)
    except OSError as exc:
        logger.warning("yellowstone: cannot write the report to %s: %s", p, exc)


# ==========================================================================================
# The `.pth` hook
# ==========================================================================================
def site_packages() -> Path:
    """This interpreter's (the venv's) site-packages directory."""
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def install_hook(site_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``yellowstone-interpose.pth``; it acts only where ``YELLOWSTONE_INTERPOSE=1``."""
    path = Path(site_dir or site_packages()) / PTH_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PTH_LINE)
    return path


def uninstall_hook(site_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Remove the ``.pth`` file; return its path, or None when it was not there."""
    path = Path(site_dir or site_packages()) / PTH_NAME
    if not path.exists():
        return None
    path.unlink()
    return path


# ==========================================================================================
# `yellowstone run`
# ==========================================================================================
_VALUE_OPTS = {"--config", "--apis", "--report", "--site-dir"}


def _split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our options, then the program (``app.py args`` or ``-m module args``)."""
    ours: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m" or not a.startswith("-"):
            return ours, list(argv[i:])
        if a == "--":
            return ours, list(argv[i + 1:])
        ours.append(a)
        if a in _VALUE_OPTS and i + 1 < len(argv):
            ours.append(argv[i + 1])
            i += 1
        i += 1
    return ours, []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yellowstone run",
        description="Run a Python program with its framework model loaders boosted: "
                    "yellowstone run [options] app.py [args] | -m module [args]")
    p.add_argument("--config", help="yellowstone.yaml: apis, backends, precision, cache_dir, "
                                     "batch_sizes, ... (default: $YELLOWSTONE_CONFIG)")
    p.add_argument("--apis", help="comma-separated APIs to interpose (default: all; "
                                  "$YELLOWSTONE_INTERPOSE_APIS)")
    p.add_argument("--report", metavar="FILE.json", help="write every model's report here")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be interposed and exit without running the program")
    p.add_argument("--install-hook", action="store_true",
                   help=f"write {PTH_NAME} so that YELLOWSTONE_INTERPOSE=1 interposes any "
                        "Python process of this environment")
    p.add_argument("--uninstall-hook", action="store_true", help=f"remove {PTH_NAME}")
    p.add_argument("--site-dir", help="directory for the hook (default: this venv's "
                                      "site-packages)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings from yellowstone")
    return p


def _distribution_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dry_run_lines(settings: InterposeSettings) -> list[str]:
    """One line per API: name, present in this environment or not, selected or not."""
    width = max(len(a.name) for a in APIS)
    lines = []
    for api in APIS:
        present = importlib.util.find_spec(api.root) is not None
        version = _distribution_version(api.distribution) if present else None
        where = (f"present ({api.distribution} {version or '?'})" if present
                 else f"absent ({api.distribution} not installed)")
        action = ("would interpose" if api in settings.apis and present else
                  "not selected" if api not in settings.apis else "nothing to do")
        lines.append(f"{api.name.ljust(width)}  {where:34}  {action}")
    return lines


def _isolate_logging(quiet: bool) -> None:
    """Keep the application's logging as it would be: our lines go to our own handler."""
    root = logging.getLogger()
    ours = logging.getLogger("yellowstone")
    handlers = list(root.handlers)
    for h in handlers:  # whatever configured the root logger before the application did
        root.removeHandler(h)
    root.setLevel(logging.WARNING)
    if not ours.handlers:
        handler = handlers[0] if handlers else logging.StreamHandler(sys.stderr)
        if not handlers:
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    ours.propagate = False


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_main(argv: list[str]) -> int:
    """``yellowstone run``: install the interposer, then run the program as Python would."""
    ours, program = _split_argv(argv)
    args = _parser().parse_args(ours)
    if args.install_hook or args.uninstall_hook:
        if args.install_hook:
            path = install_hook(args.site_dir)
            _out(f"installed {path}; processes of this environment started with "
                  "YELLOWSTONE_INTERPOSE=1 are interposed")
        else:
            removed = uninstall_hook(args.site_dir)
            _out(f"removed {removed}" if removed else "no hook was installed")
        return 0
    try:
        settings = settings_from(config_file=args.config, apis=args.apis,
                                 report_path=args.report)
    except ConfigError as exc:
        sys.stderr.write(f"yellowstone run: {exc}\n")
        return 2
    if args.dry_run:
        off = os.environ.get("YELLOWSTONE_INTERPOSE", "").strip() == "0"
        _out(f"yellowstone run: interposer {'off (YELLOWSTONE_INTERPOSE=0)' if off else 'on'}; "
              f"boost options: {dict(settings.boost) or 'YELLOWSTONE_* environment / defaults'}")
        for line in dry_run_lines(settings):
            _out(line)
        if program:
            _out(f"would run: {' '.join(program)}")
        return 0
    if not program:
        _parser().print_usage(sys.stderr)
        sys.stderr.write("yellowstone run: give a program: app.py [args] or -m module [args]\n")
        return 2
    _isolate_logging(args.quiet)
    install(settings)
    return _run_program(program)


def _run_program(program: list[str]) -> int:
    import runpy

    try:
        if program[0] == "-m":
            if len(program) < 2:
                sys.stderr.write("yellowstone run: -m needs a module name\n")
                return 2
            sys.argv = [program[1], *program[2:]]  # run_module sets argv[0] to the file
            sys.path[0:1] = [os.getcwd()] if sys.path else [os.getcwd()]
            runpy.run_module(program[1], run_name="__main__", alter_sys=True)
        else:
            script = program[0]
            if not Path(script).exists():
                sys.stderr.write(f"yellowstone run: can't open file {script!r}\n")
                return 2
            sys.argv = list(program)
            here = str(Path(script).resolve().parent)
            if sys.path:
                sys.path[0] = here
            else:
                sys.path.append(here)
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        sys.stderr.write(f"{code}\n")
        return 1
    return 0


def main() -> int:
    """``python -m yellowstone.interpose ...``: the same as ``yellowstone run ...``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
