"""What serves a signature: each valid C path timed through the shim, the fastest picked by policy."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yellowstone.errors import CacheError, ValidationError, YellowstoneError

from .manifest import IDENTITY, MANIFEST, identity_of, read_identity
from .placing import cached_artifact, check_c_path, place_shim_dir, serves
from .signatures import (
    DEFAULT_POLICY,
    SHIM_BACKENDS,
    TENSORFLOW,
    boostable,
    load_signature,
    read_meta_graph,
    resolve_config,
    shim_plan,
)

if TYPE_CHECKING:
    from yellowstone import BoostConfig, BoostedModel
    from yellowstone.model import ModelHandle
    from yellowstone.spec import TensorSpec

    from ..native import ShimModel

logger = logging.getLogger(__name__)

Timer = Callable[[str, Callable[[Mapping[str, Any]], Any]], float]  # (label, run) -> p50 ms


def bench_timer(handle: ModelHandle, cfg: BoostConfig) -> Timer:
    """A timer by the core's benchmark (``yellowstone.judge.bench``): geometric-mean p50 in ms.

    Over the served batch sizes, on the same random feeds the core timed its candidates with.
    """
    from yellowstone.judge import bench, score
    from yellowstone.report import Candidate

    sizes: list[int | None] = list(cfg.batch_sizes) if handle.batched else [None]

    def timer(label: str, run: Callable[[Mapping[str, Any]], Any]) -> float:
        cand = Candidate(backend=label)
        bench(cand, run, handle, sizes, cfg.time_budget_s)
        return score(cand)

    return timer


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShimTrial:
    """One C path's outcome: ``ok`` (valid, timed), ``rejected``, ``failed`` or ``unavailable``."""

    backend: str
    status: str
    p50_ms: float = math.inf  # geometric mean of p50 over the served batch sizes
    reason: str = ""
    path: Path | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShimChoice:
    """What serves a signature: ``shim`` (open, on ``backend``) from ``path``, or TensorFlow.

    ``input_specs`` are the inputs the shim was validated on (the batch and the dims beyond it
    that stay dynamic, with their ranges); a request outside them goes to TensorFlow.
    """

    signature: str
    backend: str  # openvino | onnxruntime | tensorflow
    shim: ShimModel | None
    path: Path | None
    tensorflow_p50_ms: float
    trials: tuple[ShimTrial, ...]
    reason: str
    input_specs: tuple[TensorSpec, ...] = ()


def choose(trials: Sequence[ShimTrial], tensorflow_p50_ms: float,
           policy: str) -> tuple[ShimTrial | None, str]:
    """The trial to serve and why; None when TensorFlow serves.

    ``auto``: the fastest valid C path, if faster than TensorFlow. ``always``: the fastest valid.
    """
    valid = sorted((t for t in trials if t.status == "ok"), key=lambda t: t.p50_ms)
    times = ", ".join(f"{t.backend} {t.p50_ms:.3f} ms" for t in valid)
    if not valid:
        why = "; ".join(
            f"{t.backend} {t.status}: {t.reason.splitlines()[0][:200] if t.reason else '-'}" for t in trials
        )
        return None, f"no valid C path ({why or 'none tried'})"
    best = valid[0]
    if policy == "auto" and not best.p50_ms < tensorflow_p50_ms:
        return None, f"TensorFlow is faster: {tensorflow_p50_ms:.3f} ms vs {times}"
    vs = f"; TensorFlow {tensorflow_p50_ms:.3f} ms" if not math.isnan(tensorflow_p50_ms) else ""
    return best, f"fastest valid C path: {times}{vs}"


class ShimSelection:
    """Choose what serves one signature: boost, open each C path, validate, time, pick, place.

    Args:
        out_dir: where the shim's files go (``out_dir/<backend>`` per C path, the winner's
            manifest at ``out_dir/shim.txt``); None: entries of the core's cache.
        shipped: a shim directory shipped with the SavedModel; used without boosting when it was
            built from this model, on this hardware, with these versions and precision.
        timer: ``(label, run) -> p50 ms`` (default :func:`bench_timer`); tests inject times.
    """

    def __init__(self, saved_model_dir: str | os.PathLike[str], signature: str, sig: Any, *,
                 policy: str = DEFAULT_POLICY, config: BoostConfig | Mapping[str, Any] | None = None,
                 out_dir: str | os.PathLike[str] | None = None, shipped: str | os.PathLike[str] | None = None,
                 timer: Timer | None = None):
        self.where = f"{saved_model_dir}[{signature}]"
        self.signature, self.sig, self.policy = signature, sig, policy
        self.cfg = resolve_config(config)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.shipped = Path(shipped) if shipped is not None else None
        self.boost_with, self.paths, self.why_not = shim_plan(policy, self.cfg)
        self.handle = load_signature(saved_model_dir, signature, sig) if self.paths else None
        self.timer = timer or (bench_timer(self.handle, self.cfg) if self.handle is not None else None)

    def run(self) -> ShimChoice:
        """Choose and return the choice (the winner's shim open; the others closed)."""
        if not self.paths:
            return self.decide([], {}, why=self.why_not)
        shipped = self.from_shipped()
        if shipped is not None:
            return shipped
        import yellowstone

        boosted = yellowstone.boost(self.handle, config=self.cfg, backends=self.boost_with)
        if self.out_dir is not None and self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        trials, opened = [], {}
        for backend in self.paths:
            trial, shim = self.trial(backend, lambda b=backend: self.place(boosted, b), boosted)
            trials.append(trial)
            if shim is not None:
                opened[backend] = shim
        return self.decide(trials, opened)

    def from_shipped(self) -> ShimChoice | None:
        """Serve the shipped shim directory when it fits this model and host; None: choose anew."""
        if self.shipped is None or not (self.shipped / MANIFEST).is_file():
            return None
        assert self.handle is not None
        have = read_identity(self.shipped)
        want = identity_of(self.handle, self.cfg, have["backend"]) if have["backend"] in self.paths else {}
        stale = [k for k in IDENTITY if have.get(k) != want.get(k)]
        if stale:
            logger.info("%s: shipped shim directory %s not used (%s differ); choosing here", self.where,
                        self.shipped, ", ".join(stale))
            return None
        trial, shim = self.trial(have["backend"], lambda: self.shipped, None)
        if shim is None:
            return None
        return self.decide([trial], {trial.backend: shim}, publish=False)

    def place(self, boosted: BoostedModel, backend: str) -> Path:
        """Write ``backend``'s shim directory from the boost's artifacts or the core's cache."""
        source = None if serves(boosted, backend) else cached_artifact(boosted, backend)
        if source is None and not serves(boosted, backend):
            raise CacheError(f"{backend}'s artifact is not in the cache (the cache is off?)")
        out = self.out_dir / backend if self.out_dir is not None else None
        path = place_shim_dir(boosted, self.sig, self.signature, out_dir=out, backend=backend, source=source)
        if path is None:
            raise CacheError("no place for the shim's files (the cache is off and no artifact directory)")
        return path

    def trial(
        self, backend: str, place: Callable[[], Path | None], boosted: BoostedModel | None
    ) -> tuple[ShimTrial, ShimModel | None]:
        """Open ``backend``'s C path, check it against TensorFlow and time it."""
        from yellowstone import metrics

        from ..native import ShimModel

        cand = boosted.report.candidate(backend) if boosted is not None else None
        if boosted is not None and (cand is None or cand.status not in ("ok", "chosen")):
            status = cand.status if cand is not None else "unavailable"
            reason = cand.reason if cand is not None else "not a candidate of the boost"
            return ShimTrial(backend=backend, status=status, reason=reason), None
        assert self.handle is not None and self.timer is not None
        path, shim = None, None
        try:
            path = place()
            shim = ShimModel(path, threads=self.cfg.effective_threads)
            check_c_path(shim, self.handle, self.cfg)
            p50 = self.timer(backend, shim.run)
        except (YellowstoneError, OSError, RuntimeError, ValueError) as exc:
            if shim is not None:
                shim.close()
            status = "rejected" if isinstance(exc, ValidationError) else "failed"
            logger.warning("%s: the shim's %s C path %s: %s", self.where, backend, status, exc)
            metrics.emit(metrics.FALLBACKS, 1, model=self.where, backend=f"shim-{backend}", reason="shim")
            return ShimTrial(backend=backend, status=status, reason=str(exc), path=path), None
        return ShimTrial(backend=backend, status="ok", p50_ms=p50, path=path), shim

    def decide(self, trials: Sequence[ShimTrial], opened: Mapping[str, ShimModel], *, why: str = "",
               publish: bool = True) -> ShimChoice:
        """Time TensorFlow (``auto``), choose, close the losers, publish the winner's manifest."""
        tf_ms = math.nan
        if self.policy == "auto" and opened:
            assert self.handle is not None and self.timer is not None
            tf_ms = self.timer(TENSORFLOW, self.handle.run)
        best, reason = choose(trials, tf_ms, self.policy) if not why else (None, why)
        for backend, shim in opened.items():
            if best is None or backend != best.backend:
                shim.close()
        path = best.path if best is not None else None
        if best is not None and publish and self.out_dir is not None:
            path = self.publish(best)
        logger.debug("%s: %s serves: %s", self.where, best.backend if best else TENSORFLOW, reason)
        return ShimChoice(signature=self.signature, backend=best.backend if best else TENSORFLOW,
                          shim=opened[best.backend] if best else None, path=path, tensorflow_p50_ms=tf_ms,
                          trials=tuple(trials), reason=reason,
                          input_specs=tuple(self.handle.inputs) if self.handle is not None else ())

    def publish(self, best: ShimTrial) -> Path:
        """``out_dir/shim.txt``: the winner's manifest, its paths under ``<backend>/``; losers removed."""
        assert self.out_dir is not None and best.path is not None
        rows = []
        for line in (best.path / MANIFEST).read_text().splitlines():
            key, _, value = line.partition(" ")
            rows.append(f"{key} {best.backend}/{value}" if key in ("xml", "bin", "onnx") else line)
        (self.out_dir / MANIFEST).write_text("\n".join(rows) + "\n")
        for other in SHIM_BACKENDS:
            if other != best.backend and (self.out_dir / other).exists():
                shutil.rmtree(self.out_dir / other)
        return self.out_dir


def select_shim(saved_model_dir: str | os.PathLike[str], signature: str, sig: Any | None = None, *,
                policy: str = DEFAULT_POLICY, config: BoostConfig | Mapping[str, Any] | None = None,
                out_dir: str | os.PathLike[str] | None = None, shipped: str | os.PathLike[str] | None = None,
                timer: Timer | None = None) -> ShimChoice:
    """Choose what serves ``signature`` (see :class:`ShimSelection`); the winner's shim is open."""
    if sig is None:
        sig = read_meta_graph(saved_model_dir).signature_def.get(signature)
    if sig is None or not boostable(sig):
        return ShimChoice(signature=signature, backend=TENSORFLOW, shim=None, path=None,
                          tensorflow_p50_ms=math.nan, trials=(), reason="not a numeric predict signature")
    return ShimSelection(saved_model_dir, signature, sig, policy=policy, config=config, out_dir=out_dir,
                         shipped=shipped, timer=timer).run()
