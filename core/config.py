"""Boost options: one frozen dataclass, validated on creation, read from dicts and YELLOWSTONE_* env.

Precedence, highest first: explicit arguments > server config (model-config.yaml, KServe flags,
passed through ``from_dict``) > environment (``from_env``) > the defaults below.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
TASKS = ("auto", "classification", "embedding", "regression")
DISPATCHES = ("per_batch", "single")


def default_cache_dir() -> Path:
    """Return ``$YELLOWSTONE_CACHE_DIR``, else ``$XDG_CACHE_HOME/yellowstone`` or ``~/.cache/...``."""
    if os.environ.get("YELLOWSTONE_CACHE_DIR"):
        return Path(os.environ["YELLOWSTONE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "yellowstone"


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoostConfig:
    """Everything that steers a boost.

    Attributes:
        backends: candidate backends in order of preference; ``("auto",)`` means every
            registered backend that can run here. ``("native",)`` turns boosting off.
        precision: ``fp32`` (default), or opt-in ``bf16``/``fp16``, or ``int8`` post-training
            quantisation; reduced precision is accepted only when validation passes under the
            policy in ``yellowstone.validate`` (error bound, cosine similarity, top-1 agreement).
        task: what the outputs mean, which picks the accuracy measure for reduced precision:
            ``classification`` (top-1 agreement), ``embedding`` (cosine similarity),
            ``regression`` (tight error bound), or ``auto`` (top-1 on ``[batch, classes]``
            outputs, cosine on every float output).
        calibration: an ``.npz`` file of real inputs for int8 calibration (one array per input
            name, samples along axis 0). Without one, ``calibration_samples`` synthetic inputs
            are drawn like the validation inputs (uniform [0, 1] for image-like examples,
            standard normal otherwise, token ids within the example's range) from a fixed seed.
        calibration_samples: how many samples int8 calibration uses.
        batch_sizes: the batch sizes that will be served; validation and benchmarks cover each.
        dynamic_batch: compile with a dynamic batch dimension where the backend handles it;
            otherwise one artifact per batch size (a bucket) and requests are padded up.
        static_buckets: with ``dynamic_batch``, a backend that runs fixed shapes faster
            (``Backend.static_buckets``: OpenVINO) also gets one artifact per served batch
            size beside its dynamic one; requests of those sizes run on them, any other size
            on the dynamic one. Off: one dynamic artifact (less compile time and memory).
        time_budget_s: benchmark time per candidate and batch size.
        validation_rounds: how many fresh random input sets each candidate is checked on.
        cache: use the content-addressed cache; ``cache_dir`` says where.
        max_runtime_failures: after this many consecutive failed compiled calls the circuit
            breaker opens: requests are served by the framework (one WARNING, metric
            ``yellowstone_fallbacks_total{reason="breaker-open"}`` per request) until, after
            ``breaker_backoff_s``, one trial call goes to the compiled backend again; success
            closes the breaker (logged "recovered"), failure reopens it for twice as long, up
            to ``breaker_backoff_max_s``.
        breaker_backoff_s: seconds the breaker stays open before its first trial call.
        breaker_backoff_max_s: the cap on the doubling back-off.
        call_timeout_s: a deadline per compiled call (0 = off). A call running longer is
            answered by the framework instead; the slow call is not killed but finishes in the
            background, and meanwhile new requests for that backend go to the framework too
            (``reason="deadline"``). It counts as one failure for the breaker. When on, compiled
            calls run on a small pool of worker threads of the model.
        dispatch: ``per_batch`` (default): every served batch size is won by the fastest valid
            backend there, and each request goes to the winner of the nearest served size at or
            above its batch (the largest past them); ``report.chosen`` is the winner of the
            first (smallest) size and ``report.dispatch`` maps each size to its backend.
            ``single``: one backend for every size, chosen on the geometric mean of p50 over the
            served batch sizes.
        dispatch_memory_mb: a budget for the compiled artifacts that ``per_batch`` dispatch
            keeps (0 = unlimited), measured by their size on disk as a proxy for memory. The
            first size's winner is always kept; other winners are added, those winning the most
            sizes first, while the total fits; a size whose winner does not fit goes to the
            fastest backend kept (the framework costs nothing).
        threads: intra-op threads for backends (0 = derive from ``workers``).
        workers: server worker processes sharing this process's cores (TorchServe workers,
            KServe's uvicorn workers in one pod). With ``threads=0`` each backend gets
            ``cores // workers`` threads, so N workers do not oversubscribe the cores. "Cores"
            honours a cgroup CPU quota: each KServe replica is a pod whose CPU limit, not the
            node's core count, sizes its threads.
        follow_load: with several workers and ``threads=0``, load each compiled model a second
            time with every core and use that copy for any call that starts while no other
            worker on the host is busy (:mod:`yellowstone.loadshare`): one request at a time
            then runs as fast as with one worker, and under load each keeps its share. Costs
            one more load of the artifact (its memory and a second, one-round check); skipped
            where the copies would take more than a quarter of a container memory limit.
        spin_wait: backend threads may spin-wait between and after their parallel sections
            (ONNX Runtime's default): fastest for calls back to back in one loop. In a server
            the request path (HTTP, decoding, the frontend's IPC) runs on the same cores between
            calls and spinning threads take them from it: through TorchServe, ResNet-50 on ONNX
            Runtime spent 9.6 ms a request outside the model spinning against 5.1 ms without
            (same model time). So the servers' settings default it to false
            (:func:`yellowstone.serving.boost_config`); with several workers it is always off.
        options: backend-specific options, ``{"openvino": {...}, "tvm": {...}}``.
    """

    backends: tuple[str, ...] = ("auto",)
    precision: str = "fp32"
    task: str = "auto"
    calibration: str = ""
    calibration_samples: int = 32
    batch_sizes: tuple[int, ...] = (1,)
    dynamic_batch: bool = True
    static_buckets: bool = True
    time_budget_s: float = 1.0
    validation_rounds: int = 2
    cache: bool = True
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    max_runtime_failures: int = 3
    breaker_backoff_s: float = 30.0
    breaker_backoff_max_s: float = 600.0
    call_timeout_s: float = 0.0
    dispatch: str = "per_batch"
    dispatch_memory_mb: int = 0
    threads: int = 0
    workers: int = 1
    follow_load: bool = True
    spin_wait: bool = True
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        backends = self.backends
        if isinstance(backends, str):
            backends = tuple(b.strip() for b in backends.split(",") if b.strip())
        object.__setattr__(self, "backends", tuple(backends) or ("auto",))
        sizes = self.batch_sizes
        if isinstance(sizes, int):
            sizes = (sizes,)
        elif isinstance(sizes, str):
            sizes = tuple(int(s) for s in sizes.split(",") if s.strip())
        object.__setattr__(self, "batch_sizes", tuple(sorted({int(s) for s in sizes})))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.calibration_samples < 1:
            raise ConfigError("calibration_samples must be at least 1")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch_sizes must be positive integers, got {self.batch_sizes}")
        if self.time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if self.validation_rounds < 1:
            raise ConfigError("validation_rounds must be at least 1")
        if self.max_runtime_failures < 1:
            raise ConfigError("max_runtime_failures must be at least 1")
        if not self.breaker_backoff_s > 0:
            raise ConfigError(f"breaker_backoff_s must be > 0, got {self.breaker_backoff_s}")
        if not self.breaker_backoff_max_s >= self.breaker_backoff_s:
            raise ConfigError(f"breaker_backoff_max_s ({self.breaker_backoff_max_s}) must be >= "
                              f"breaker_backoff_s ({self.breaker_backoff_s})")
        if not 0 <= self.call_timeout_s < float("inf"):
            raise ConfigError(f"call_timeout_s must be >= 0 (0 = off), got {self.call_timeout_s}")
        if self.dispatch not in DISPATCHES:
            raise ConfigError(f"dispatch {self.dispatch!r} is not one of {', '.join(DISPATCHES)}")
        if self.dispatch_memory_mb < 0:
            raise ConfigError("dispatch_memory_mb must be >= 0 (0 = unlimited)")
        if self.threads < 0:
            raise ConfigError("threads must be >= 0")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")

    @classmethod
    def field_names(cls) -> list[str]:
        """Names accepted by :meth:`from_dict`."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: BoostConfig | None = None) -> BoostConfig:
        """Build a config from a mapping, over ``base``; unknown keys are rejected by name."""
        data = {k.replace("-", "_"): v for k, v in dict(data).items()}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; valid options: "
                f"{', '.join(cls.field_names())}"
            )
        if "options" in data and not isinstance(data["options"], Mapping):
            raise ConfigError("options must be a mapping of backend name to options")
        if isinstance(data.get("dispatch"), str):
            data["dispatch"] = data["dispatch"].strip().lower().replace("-", "_")
        for key in ("dynamic_batch", "static_buckets", "cache", "follow_load", "spin_wait"):
            if isinstance(data.get(key), str):
                data[key] = data[key].strip().lower() in ("1", "true", "yes", "on")
        for key, typ in (("time_budget_s", float), ("validation_rounds", int),
                         ("max_runtime_failures", int), ("threads", int), ("workers", int),
                         ("calibration_samples", int), ("breaker_backoff_s", float),
                         ("breaker_backoff_max_s", float), ("call_timeout_s", float),
                         ("dispatch_memory_mb", int)):
            if key in data:
                try:
                    data[key] = typ(data[key])
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{key} must be a number, got {data[key]!r}") from exc
        if base is None:
            return cls(**data)
        return dataclasses.replace(base, **data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BoostConfig:
        """Build a config from ``YELLOWSTONE_<FIELD>`` variables over the defaults.

        ``YELLOWSTONE_BACKEND=native`` is the kill switch: it wins over everything and turns
        boosting off (the model runs in its own framework).
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.field_names():
            value = env.get(f"YELLOWSTONE_{name.upper()}")
            if value is not None and name != "options":
                data[name] = value
        if env.get("YELLOWSTONE_BACKEND", "").strip():
            data["backends"] = env["YELLOWSTONE_BACKEND"].strip().lower()
        if kill_switch(env):
            data["backends"] = "native"
        return cls.from_dict(data)

    @property
    def effective_threads(self) -> int:
        """Threads per backend: ``threads``, else cores // workers, else the pod's CPU limit.

        With one worker and no CPU quota below the affinity mask, 0: the backend's own default.
        """
        from .serving.threads import plan_threads

        return plan_threads(self.workers, self.threads).threads

    @property
    def killed(self) -> bool:
        """True when boosting is switched off (``native`` only)."""
        return self.backends == ("native",)

    def to_dict(self) -> dict[str, Any]:
        """Return the options that affect compiled artifacts and decisions, JSON-friendly."""
        return {
            "backends": list(self.backends), "precision": self.precision, "task": self.task,
            "calibration": self.calibration, "calibration_samples": self.calibration_samples,
            "batch_sizes": list(self.batch_sizes), "dynamic_batch": self.dynamic_batch,
            "static_buckets": self.static_buckets,
            "dispatch": self.dispatch, "dispatch_memory_mb": self.dispatch_memory_mb,
            "options": {k: dict(v) for k, v in sorted(self.options.items())},
        }


def resolve_config(config: BoostConfig | Mapping[str, Any] | None = None, **overrides: Any) -> BoostConfig:
    """Merge env < config < explicit keyword overrides; the env kill switch always wins."""
    base = BoostConfig.from_env()
    if isinstance(config, BoostConfig):
        merged = config
    elif config:
        merged = BoostConfig.from_dict(config, base=base)
    else:
        merged = base
    if overrides:
        merged = BoostConfig.from_dict({k: v for k, v in overrides.items() if v is not None},
                                       base=merged)
    if kill_switch():
        merged = dataclasses.replace(merged, backends=("native",))
    return merged


def kill_switch(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``YELLOWSTONE_BACKEND`` (or ``YELLOWSTONE_BACKENDS``) is ``native``, any case.

    The one reading of the kill switch: the CLI, every plugin and the interposer ask here.
    """
    env = os.environ if environ is None else environ
    return any(env.get(var, "").strip().lower() == "native"
               for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS"))
