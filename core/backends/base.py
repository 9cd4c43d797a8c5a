"""The backend protocol: what every backend module implements, and the metadata it returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..model import ModelHandle


@dataclasses.dataclass(frozen=True, kw_only=True)
class Availability:
    """Whether a backend can run here, and on what."""

    name: str
    available: bool
    version: str | None = None
    devices: tuple[str, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the ``doctor --json`` form."""
        return {"name": self.name, "available": self.available, "version": self.version,
                "devices": list(self.devices), "reason": self.reason}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompileRequest:
    """What the core asks a backend to build.

    Attributes:
        batch: the batch size to specialise for, or None for a dynamic batch dimension.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``.
        threads: intra-op threads (0 = backend default: all cores available).
        shared: other workers, or a server's own request path, share these cores
            (``BoostConfig.workers > 1`` or ``spin_wait`` off): idle backend threads should
            sleep rather than spin.
        options: this backend's entry of ``BoostConfig.options``.
        calibration: for ``int8``, the inputs to calibrate activation ranges on (named numpy
            feeds, batch 1 each); empty otherwise.
        cache_dir: the compile cache's directory, where a backend may keep state shared across
            models (TVM's tuning records); None when caching is off.
    """

    batch: int | None
    precision: str
    threads: int = 0
    shared: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    calibration: tuple[Mapping[str, np.ndarray], ...] = ()
    cache_dir: Path | None = None

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        """The calibration feeds shaped for this request.

        Batch-1 feeds for a dynamic batch, else groups of ``batch`` samples (the last group
        filled up by repeating samples).
        """
        feeds = [dict(f) for f in self.calibration]
        if self.batch is None or self.batch == 1 or not feeds:
            return feeds
        out = []
        for i in range(0, len(feeds), self.batch):
            group = [feeds[(i + j) % len(feeds)] for j in range(self.batch)]
            out.append({k: np.concatenate([g[k] for g in group]) for k in group[0]})
        return out


@runtime_checkable
class CompiledModel(Protocol):
    """A compiled model: runs named numpy feeds and returns outputs in the model's order."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one inference. Must be safe to call from several threads."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A compiler or runtime yellowstone can pick.

    ``compile`` writes every file the compiled model needs under ``workdir`` (the cache stores
    that directory as it is) and ``load`` rebuilds the compiled model from such a directory
    without compiling. A backend that cannot serialise its result returns ``cacheable = False``.

    Attributes:
        name: the registry name.
        dynamic_batch: handles a dynamic batch dimension well (else: one artifact per bucket).
        cacheable: ``compile``'s directory can be stored and loaded again.
        auto_excluded: empty when ``backends="auto"`` tries this backend, else the measured
            reason it is left out (naming it in ``backends`` still tries it).

    Optional: ``owns_threads = True`` says each compiled model sizes its own thread pool from
    ``CompileRequest.threads`` (not a process-wide pool such as torch's), so loading the same
    artifact again with more threads gives a faster copy (``BoostConfig.follow_load``).
    ``static_buckets = True`` says the backend runs fixed shapes faster than its dynamic batch:
    with ``BoostConfig.static_buckets`` it gets one artifact per served batch size beside the
    dynamic one.
    """

    name: str
    dynamic_batch: bool
    cacheable: bool
    auto_excluded: str

    def probe(self) -> Availability:
        """Say whether this backend can run here (cheap after the first call)."""
        ...

    def version(self) -> str:
        """The backend's version, part of every cache key."""
        ...

    def supports(self, model: ModelHandle) -> str | None:
        """Return None when ``model`` can be compiled, else the reason it cannot."""
        ...

    def supports_precision(self, precision: str) -> str | None:
        """Return None when ``precision`` can run here, else the reason (checked before compiling)."""
        ...

    def compile(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Convert and compile ``model``; write the artifact under ``workdir``."""
        ...

    def load(self, model: ModelHandle, request: CompileRequest, workdir: Path) -> CompiledModel:
        """Load an artifact that ``compile`` wrote, without compiling."""
        ...


def missing_members(backend: object) -> list[str]:
    """The members of the :class:`Backend` protocol that ``backend`` lacks (empty: it conforms)."""
    members = set(Backend.__annotations__) | {
        n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")}
    return sorted(m for m in members if not hasattr(backend, m))
