"""``boost``: find the fastest valid backend for each batch size, or reuse what was found before."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, loadshare, metrics
from .artifact_dir import read_artifact_dir
from .backends import Backend, backend_names, get_backend
from .boosted import BoostedModel
from .builder import Builder
from .cache import ArtifactCache, make_key
from .calibration import Calibration, calibration_set
from .config import BoostConfig, resolve_config
from .decision import decision_record, read_decision
from .dispatch import NATIVE, Buckets, Built, disk_bytes, p50_at, plan_dispatch, run_buckets
from .errors import CacheError, ConfigError, ValidationError, YellowstoneError
from .hardware import detect, memory_limit_bytes
from .judge import (
    ValidationSet,
    bench,
    example_batch,
    record_errors,
    runoff,
    score,
    validate,
    validation_sets,
)
from .model import ModelHandle, load_model
from .report import Candidate, Report, stored_report
from .serving.threads import plan_threads
from .spec import TensorSpec
from .validate import OutputError, weak_references

__all__ = ["BoostRun", "BoostedModel", "boost", "calibration_set"]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def boost(
    model: Any,
    example_inputs: Any = None,
    *,
    config: BoostConfig | Mapping[str, Any] | None = None,
    input_specs: Sequence[TensorSpec] | None = None,
    sample_inputs: Sequence[Mapping[str, np.ndarray]] = (),
    calibration_inputs: Sequence[Mapping[str, np.ndarray]] = (),
    artifact_dir: str | Path | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> BoostedModel:
    """Boost ``model``: return the fastest validated compiled version, or native.

    Args:
        model: ``nn.Module``, TorchScript, ``ExportedProgram``, Keras model, ``ModelProto``, or
            a path (``.onnx``, ``.pt2``, ``.pt``, ``.keras``, SavedModel directory).
        example_inputs: a tensor, a tuple, or a name -> tensor mapping, as the model is called.
        config: a :class:`BoostConfig` or a mapping of its fields (server configuration).
        input_specs: named specs where no example is at hand (CLI ``--input``).
        sample_inputs: real inputs to validate on, besides fresh random ones.
        calibration_inputs: real inputs to calibrate ``int8`` on (each a name -> array mapping,
            samples along axis 0); else ``config.calibration``, else a synthetic set.
        artifact_dir: a directory ``BoostedModel.save`` wrote; used instead of compiling when it
            matches this model and host.
        progress: called with one line per step (the CLI prints these).
        **options: :class:`BoostConfig` fields, overriding ``config`` and the environment.
    """
    started = time.perf_counter()
    cfg = resolve_config(config, **options)
    handle = load_model(model, example_inputs, input_specs=input_specs)
    calib = calibration_set(handle, cfg, calibration_inputs) if cfg.precision == "int8" else None
    run = BoostRun(handle, cfg, progress=progress, calibration=calib, started=started)
    boosted = run.run(artifact_dir=artifact_dir, samples=sample_inputs)
    if cfg.precision == "fp32" or cfg.killed or boosted.report.chosen != NATIVE:
        return boosted
    return fp32_instead(handle, cfg, boosted, progress=progress, samples=sample_inputs)


def fp32_instead(handle: ModelHandle, cfg: BoostConfig, reduced: BoostedModel, *,
                 progress: Progress | None, samples: Sequence[Mapping[str, np.ndarray]]
                 ) -> BoostedModel:
    """No candidate at a reduced precision beat native: search again at fp32 and serve that.

    Native is the fp32 framework, so a compiled fp32 backend that beats it gives the same
    accuracy faster; asking for int8 must never serve slower than asking for fp32. The reduced
    search's report rides along (``report.precision_fallback``); both searches' decisions are
    cached, so a restart loads without compiling.
    """
    why = "; ".join(f"{c.backend}: {c.status}" for c in reduced.report.candidates
                    if c.backend != NATIVE and c.status != "unavailable") or "no candidate ran"
    logger.warning("%s: no %s candidate beat native (%s); searching at fp32 instead",
                   handle.name, cfg.precision, why)
    run = BoostRun(handle, dataclasses.replace(cfg, precision="fp32"), progress=progress)
    boosted = run.run(samples=samples)
    if boosted.report.chosen == NATIVE:
        return reduced
    boosted.report.precision_fallback = reduced.report.to_dict()
    boosted.report.fallback_reason = (f"no {cfg.precision} candidate beat native ({why}); "
                                      f"serving fp32 on {boosted.report.chosen}")
    return boosted


class BoostRun:
    """One ``boost`` call: the model, its config, the report it fills, the cache and the clock.

    :meth:`run` tries, in order, an artifact directory (:meth:`from_artifact_dir`), the cached
    decision (:meth:`warm_start`) and the search (:meth:`search`); each ends in :meth:`finish`.
    What was stored is loaded and checked once against the framework; one that does not load or
    no longer matches is discarded and the search runs instead. The search runs the model
    natively on fresh random inputs at every batch size (the reference); compiles each candidate
    backend (:class:`~yellowstone.builder.Builder`), validates it against the reference and
    benchmarks it; then chooses the fastest valid candidate (``native`` included) for each served
    batch size (``dispatch="per_batch"``, within ``dispatch_memory_mb``) or over all of them
    (``dispatch="single"``: geometric mean). Reduced precision is judged on more samples than
    fp32 (:mod:`yellowstone.judge`); ``int8`` candidates calibrate on ``calibration``
    (:mod:`yellowstone.calibration`), part of every int8 artifact's cache key.
    """

    def __init__(self, handle: ModelHandle, cfg: BoostConfig, *, progress: Progress | None = None,
                 calibration: Calibration | None = None, started: float | None = None):
        self.handle = handle
        self.cfg = cfg
        self.say: Progress = progress or (lambda msg: logger.info("%s", msg))
        self.calib = calibration
        self.started = time.perf_counter() if started is None else started
        self.hardware = detect().fingerprint
        self.sizes: list[int | None] = list(cfg.batch_sizes) if handle.batched else [None]
        self.builds = Builder(handle, cfg, calibration, self.hardware)
        self.report = Report(
            model=handle.name, precision=cfg.precision, fingerprint=handle.fingerprint,
            task=cfg.task, calibration=calibration.source if calibration else "",
            hardware=self.hardware,
            batch_sizes=[b for b in self.sizes if b is not None] or [example_batch(handle)],
            inputs=[s.to_dict() for s in handle.inputs], outputs=list(handle.output_names))

    @property
    def cache(self) -> ArtifactCache | None:
        """The artifact and decision cache (None with caching off, or before :meth:`run` opens it)."""
        return self.builds.cache

    # -- the run ----------------------------------------------------------------------------
    def run(self, *, artifact_dir: str | Path | None = None,
            samples: Sequence[Mapping[str, np.ndarray]] = ()) -> BoostedModel:
        """Serve from ``artifact_dir``, else the cached decision, else a fresh search."""
        if self.cfg.killed:
            return self.boosting_off()
        note = ""
        if artifact_dir is not None:
            try:
                return self.from_artifact_dir(Path(artifact_dir))
            except (YellowstoneError, OSError) as exc:
                note = f"artifact {artifact_dir} not used: {exc}"
                logger.warning("%s: %s; compiling here instead", self.handle.name, note)
                metrics.emit(metrics.FALLBACKS, 1, model=self.handle.name, backend="artifact",
                             reason="artifact")
        self.builds.cache = ArtifactCache(self.cfg.cache_dir) if self.cfg.cache else None
        names = candidate_names(self.cfg)
        key = self.decision_key(names)
        warm = self.warm_start(key, names)
        if warm is not None:
            return warm
        boosted = self.search(names, samples)
        boosted.report.fallback_reason = boosted.report.fallback_reason or note
        self.store_decision(key)
        return boosted

    def boosting_off(self) -> BoostedModel:
        """The kill switch: serve natively, compile nothing."""
        self.report.candidates = [Candidate(backend=NATIVE, status="chosen",
                                            reason="boosting is off (backends=native)")]
        logger.info("%s: boosting is off; serving on native", self.handle.name)
        return self.finish(None, {})

    def finish(self, compiled: Buckets | None, dirs: Mapping[int | None, Path],
               extras: Mapping[str, Built] | None = None) -> BoostedModel:
        """Time the run, count it, and wrap what serves (with its scratch dirs, if any).

        ``extras``: the other backends ``report.dispatch`` sends batch sizes to.
        """
        extras = dict(extras or {})
        report = self.report
        report.load_s = round(time.perf_counter() - self.started, 3)
        if report.chosen != NATIVE or report.cache == "miss":
            metrics.emit(metrics.COMPILE_SECONDS if report.cache == "miss" else
                         metrics.LOAD_SECONDS, report.load_s, "s", model=report.model,
                         backend=report.chosen)
        per_batch = ", ".join(f"b{b} {n}" for b, n in sorted(report.dispatch.items()))
        logger.info("%s: serving on %s (%s, cache %s, %.2f s%s)", report.model, report.chosen,
                    report.precision, report.cache, report.load_s,
                    f"; per batch: {per_batch}" if extras else "")
        serving = [*([report.chosen] if compiled is not None else []), *extras]
        scratch = self.builds.release_scratch(serving)
        boosted = BoostedModel(self.handle, compiled, report, self.cfg, dirs, scratch=scratch,
                               extras=extras)
        self.follow_load(boosted, extras if compiled is None
                         else {**extras, report.chosen: (compiled, dirs)})
        return boosted

    def follow_load(self, boosted: BoostedModel, built: Mapping[str, Built]) -> None:
        """With several workers sharing the cores, give each thread-owning backend a wide copy.

        Only backends that size their own thread pool (``owns_threads``) gain from a copy with
        more threads; the others (and a fixed ``threads``) keep their share. Under a container
        memory limit, the copies (their artifacts' size on disk, times the workers) may take at
        most a quarter of it. A copy that does not load or check is left out with a WARNING:
        that backend keeps its share.
        """
        cfg = self.cfg
        plan = plan_threads(cfg.workers, cfg.threads)
        if not (cfg.follow_load and cfg.threads == 0 and plan.shared
                and 0 < plan.threads < plan.cores):
            return
        owners = {name: dirs for name, (buckets, dirs) in built.items()
                  if buckets and dirs and getattr(get_backend(name), "owns_threads", False)}
        if not owners:
            return
        limit = memory_limit_bytes()
        extra = sum(disk_bytes(dirs) for dirs in owners.values()) * plan.workers
        if limit and extra > limit // 4:
            logger.info("%s: no every-core copies: %d workers would hold %d MiB more, past a "
                        "quarter of the memory limit (%d MiB); each keeps %d thread(s) per call",
                        self.handle.name, plan.workers, extra >> 20, limit >> 20, plan.threads)
            return
        if (board := loadshare.board()) is None:
            return
        wide: dict[str, Buckets] = {}
        for name, dirs in owners.items():
            t0 = time.perf_counter()
            try:
                wide[name] = self.builds.load_checked(name, dirs, threads=plan.cores)
            except YellowstoneError as exc:
                logger.warning("%s: %s with %d threads not loaded (%s); it keeps %d thread(s) "
                               "per call", self.handle.name, name, plan.cores, exc, plan.threads)
                continue
            logger.info("%s: %s loaded again with %d threads for calls made while no other "
                        "worker is busy (%d otherwise; %.2f s)", self.handle.name, name,
                        plan.cores, plan.threads, time.perf_counter() - t0)
        if wide:
            boosted.follow_load(wide, board)

    # -- keys -------------------------------------------------------------------------------
    def decision_key(self, names: Sequence[str]) -> str:
        """The cache key of the decision for this model, host, config and candidate list."""
        return make_key(kind="decision", model=self.handle.fingerprint, hardware=self.hardware,
                        inputs=[s.to_dict() for s in self.handle.inputs],
                        config=self.cfg.to_dict(), candidates=list(names),
                        calibration=self.calib.digest if self.calib else "",
                        yellowstone=__version__)

    def artifact_key(self, backend: str, bucket: int | None) -> str:
        """The cache key of ``backend``'s artifact for ``bucket``."""
        return self.builds.artifact_key(backend, bucket)

    # -- serving what was built before ------------------------------------------------------
    def serve_stored(self, stored: Report, name: str, built: dict[str, Built],
                     dispatch: Mapping[int, str], cache: str) -> BoostedModel:
        """Serve what an earlier search chose, with that search's candidates in the report.

        ``built`` holds every dispatched backend's loaded buckets and dirs, ``name``'s included.
        """
        self.report.candidates, self.report.speedup = stored.candidates, stored.speedup
        if stored.precision_fallback:  # an fp32 artifact standing in for a reduced precision
            self.report.precision = stored.precision
            self.report.precision_fallback = stored.precision_fallback
            self.report.fallback_reason = stored.fallback_reason
        self.report.chosen, self.report.cache = name, cache
        self.report.dispatch = self.dispatch_or_single(dispatch, name)
        compiled, dirs = built.pop(name, (None, {}))
        return self.finish(compiled, dirs, built)

    def dispatch_or_single(self, dispatch: Mapping[int, str], name: str) -> dict[int, str]:
        """``dispatch`` as stored, or every served size on ``name`` (single mode, old records)."""
        if not self.handle.batched:
            return {}
        if dispatch and self.cfg.dispatch == "per_batch":
            return dict(dispatch)
        return {b: name for b in self.cfg.batch_sizes}

    def load_routes(self, routes: Mapping[str, Mapping[int | None, Path]],
                    dispatch: Mapping[int, str]) -> dict[str, Built]:
        """Load and check every dispatched backend's artifacts (each at its first size)."""
        built: dict[str, Built] = {}
        for name, dirs in routes.items():
            size = min((b for b, n in dispatch.items() if n == name), default=None)
            built[name] = (self.builds.load_checked(name, dirs, size), dirs)
        return built

    def from_artifact_dir(self, path: Path) -> BoostedModel:
        """Load what ``BoostedModel.save`` wrote; raise a YellowstoneError when it does not fit."""
        meta = read_artifact_dir(path, fingerprint=self.handle.fingerprint,
                                 hardware=self.hardware, precision=self.cfg.precision)
        per_batch = self.cfg.dispatch != "single" and self.handle.batched
        dispatch = meta.dispatch_sizes if per_batch else {}
        routes = meta.route_dirs(path, dispatch)
        built = self.load_routes(routes, dispatch)
        stored = stored_report(meta.report)
        self.say(f"{self.handle.name}: loaded {', '.join(routes) or NATIVE} from artifact "
                 f"directory {path}")
        return self.serve_stored(stored, meta.backend, built, dispatch, "artifact")

    def warm_start(self, key: str, names: Sequence[str]) -> BoostedModel | None:
        """Serve the cached decision's backend from cached artifacts; None means search again."""
        if self.cache is None or (decision := self.cache.get_decision(key)) is None:
            return None
        try:
            stored = read_decision(decision, names)
        except CacheError as exc:  # the search below stores a new decision in its place
            logger.warning("%s: ignoring the cached decision (%s); searching again",
                           self.handle.name, exc)
            metrics.emit(metrics.CACHE_DISCARDS, 1, reason="schema")
            return None
        dispatch = self.dispatch_or_single(stored.dispatch, stored.backend)
        buckets = {n: b for n, b in stored.routes.items() if n in dispatch.values()}
        if stored.backend != NATIVE:
            buckets[stored.backend] = stored.buckets
        if not buckets:
            self.say(f"{self.handle.name}: cached decision: native is fastest here")
            return self.serve_stored(stored.report, NATIVE, {}, dispatch, "hit")
        built: dict[str, Built] = {}
        for name, keys in buckets.items():
            try:
                dirs = self._cached_dirs(name, keys)
                if dirs is None:
                    return None
                built.update(self.load_routes({name: dirs}, dispatch))
            except Exception as exc:  # noqa: BLE001 - a cached artifact that fails is rebuilt
                self._discard_cached(name, keys, exc)
                return None
        self.say(f"{self.handle.name}: cache hit: {', '.join(built)} loaded without compiling")
        return self.serve_stored(stored.report, stored.backend, built, dispatch, "hit")

    def _cached_dirs(self, name: str, buckets: Sequence[int | None],
                     ) -> dict[int | None, Path] | None:
        """The cache entries of ``name``'s artifacts; None when one is missing or unusable here."""
        assert self.cache is not None
        if not get_backend(name).probe().available:
            logger.warning("%s: cached decision names %s, which is not available now; "
                           "searching again", self.handle.name, name)
            return None
        dirs: dict[int | None, Path] = {}
        for bucket in buckets:
            path = self.cache.lookup(self.artifact_key(name, bucket))
            if path is None:
                self.say(f"{self.handle.name}: cached {name} artifact missing or corrupt; "
                         "searching again")
                return None
            dirs[bucket] = path
        return dirs

    def _discard_cached(self, name: str, buckets: Sequence[int | None], exc: Exception) -> None:
        """Drop ``name``'s cached artifacts after they failed; say so once and count it."""
        assert self.cache is not None
        reason = str(exc) if isinstance(exc, YellowstoneError) else f"{type(exc).__name__}: {exc}"
        logger.warning("%s: cached %s artifact discarded (%s); searching again",
                       self.handle.name, name, reason)
        metrics.emit(metrics.FALLBACKS, 1, model=self.handle.name, backend=name, reason="cache")
        for bucket in buckets:
            try:
                key = self.artifact_key(name, bucket)
            except Exception:  # noqa: BLE001 - no key, nothing of ours to discard
                continue
            self.cache.discard(key)

    def store_decision(self, key: str) -> None:
        """Remember what the search chose (nothing when caching is off)."""
        if self.cache is not None:
            self.cache.put_decision(key, decision_record(self.report))

    # -- the search -------------------------------------------------------------------------
    def search(self, names: Sequence[str],
               samples: Sequence[Mapping[str, np.ndarray]] = ()) -> BoostedModel:
        """Try every candidate on the reference sets; serve the fastest valid one (or native)."""
        sets = self.reference(samples)
        native = Candidate(backend=NATIVE, status="ok", version=get_backend(NATIVE).version())
        bench(native, self.handle.run, self.handle, self.sizes, self.cfg.time_budget_s)
        self.report.candidates = [native]
        built: dict[str, Built] = {}
        for step, name in enumerate(names, 1):
            result = self.try_candidate(f"[{step}/{len(names)}] {name}", name, sets, native)
            if result is not None:
                built[name] = result
        runners: dict[str, Callable[[dict[str, np.ndarray]], object]] = {
            NATIVE: self.handle.run, **{
            name: functools.partial(run_buckets, compiled, batched=self.handle.batched)
            for name, (compiled, _) in built.items()}}
        runoff([c for c in self.report.candidates if c.status == "ok"], runners, self.handle,
               self.sizes, self.cfg.time_budget_s)
        best = self.choose(native)
        if self.handle.batched:
            extras = plan_dispatch(self.report, self.cfg, best, built)
        else:
            self.report.dispatch, extras = {}, []
        compiled, dirs = built.get(best.backend, (None, {}))
        serving = [c for c in self.report.candidates if c.backend in {best.backend, *extras}]
        hit = all(c.cache == "hit" for c in serving if c.backend != NATIVE) and best.cache == "hit"
        self.report.cache = "hit" if hit else "miss"
        return self.finish(compiled, dirs, {name: built[name] for name in extras})

    def reference(self, samples: Sequence[Mapping[str, np.ndarray]]) -> list[ValidationSet]:
        """Run natively on fresh random inputs (and the user's samples); flag weak references."""
        self.say(f"{self.handle.name}: reference run on native at batch sizes "
                 f"{', '.join(str(b) for b in self.report.batch_sizes)}")
        sets = validation_sets(self.handle, self.cfg, self.sizes, samples)
        self.report.warnings = weak_references(self.handle.output_names, sets[0][2])
        for warning in self.report.warnings:
            logger.warning("%s: %s", self.handle.name, warning)
        return sets

    def try_candidate(self, step: str, name: str, sets: Sequence[ValidationSet],
                      native: Candidate) -> Built | None:
        """Compile, validate and benchmark one candidate; record the outcome in the report."""
        cand = Candidate(backend=name)
        self.report.candidates.append(cand)
        try:
            backend = get_backend(name)
            why_not = self.why_not(backend, cand)
            if why_not:
                cand.status, cand.reason = "unavailable", why_not
                return None
            result = self.trial(step, backend, cand, sets)
            self.say(f"{step}: ok, p50 {cand.p50_ms:.2f} ms (native {native.p50_ms:.2f} ms)")
            return result
        except ValidationError as exc:
            cand.status, cand.reason = "rejected", str(exc)
            self.say(f"{step}: rejected: {exc}")
        except Exception as exc:  # noqa: BLE001 - any candidate failure is recorded, not fatal
            cand.status = "failed"
            cand.reason = str(exc) if isinstance(exc, YellowstoneError) else \
                f"{type(exc).__name__}: {exc}"
            logger.debug("%s failed", name, exc_info=True)
            self.say(f"{step}: failed: {_first_line(cand.reason, 200)}")
        return None

    def why_not(self, backend: Backend, cand: Candidate) -> str | None:
        """Why ``backend`` is not tried here (left out of auto, absent, unsupported), or None."""
        if self.cfg.backends == ("auto",) and backend.auto_excluded:
            return backend.auto_excluded
        avail = backend.probe()
        cand.version = avail.version
        if not avail.available:
            return avail.reason
        return backend.supports(self.handle) or backend.supports_precision(self.cfg.precision)

    def bucket_keys(self, backend: Backend) -> list[int | None]:
        """The artifacts ``backend`` builds: batch sizes (fixed shapes) and None (dynamic batch).

        One dynamic artifact where the backend handles a dynamic batch (or the model has no
        batch), else one per served size; a backend faster on fixed shapes
        (``static_buckets``) gets both, the dynamic one for the sizes without their own, where
        the batch is the model's only dynamic dim (a bucket of a model with a dynamic sequence
        would still have a dynamic shape).
        """
        if not self.handle.batched:
            return [None]
        if not (backend.dynamic_batch and self.cfg.dynamic_batch):
            return list(self.sizes)
        if (self.cfg.static_buckets and getattr(backend, "static_buckets", False)
                and not self.handle.dim_ranges):
            return [None, *self.sizes]
        return [None]

    def trial(self, step: str, backend: Backend, cand: Candidate,
              sets: Sequence[ValidationSet]) -> Built:
        """Build ``backend``'s buckets, validate them on ``sets``, benchmark; fills ``cand``."""
        buckets = self.bucket_keys(backend)
        sizes: list[int | None] = [b for b in buckets if b is not None]
        cand.buckets = [*sizes, None] if sizes and None in buckets else sizes or None
        self.say(f"{step}: compiling" + (f" buckets {sizes}" if sizes else "")
                 + (" and dynamic batch" if sizes and None in buckets else "")
                 + ("" if sizes else " (dynamic batch)"))
        t0 = time.perf_counter()
        beside = bool(sizes) and None in buckets  # fixed shapes beside the dynamic artifact
        compiled, dirs, hit = self.builds.compile(backend, [None] if beside else buckets)
        if beside:  # a fixed-shape bucket that fails costs only itself
            try:
                fixed, fixed_dirs, fixed_hit = self.builds.compile(backend, sizes)
                compiled, dirs, hit = {**compiled, **fixed}, {**dirs, **fixed_dirs}, hit and fixed_hit
            except Exception as exc:  # noqa: BLE001 - whatever the import raises: dynamic only
                logger.info("%s: %s fixed-shape buckets failed (%s); dynamic batch only",
                            self.handle.name, backend.name, _first_line(str(exc), 200))
                self.say(f"{step}: fixed-shape buckets failed; dynamic batch only")
                cand.buckets = None
        cand.compile_s = round(time.perf_counter() - t0, 3)
        cand.cache = "hit" if hit else "miss"
        self.say(f"{step}: validating ({len(sets)} input sets)")
        errors: dict[str, OutputError] = {}
        try:
            validate(backend.name, self.handle, compiled, self.cfg, sets, errors)
        finally:  # a rejected candidate's errors are in the report too: what it would cost
            record_errors(cand, errors)
        self.say(f"{step}: benchmarking")
        bench(cand, functools.partial(run_buckets, compiled, batched=self.handle.batched),
              self.handle, self.sizes, self.cfg.time_budget_s)
        cand.status = "ok"
        return compiled, dirs

    def choose(self, native: Candidate) -> Candidate:
        """Mark the fastest valid candidate chosen, explain the others, and say so on fallback.

        Fastest at the first served batch size (``per_batch`` dispatch), or on the geometric
        mean over the served sizes (``single``).
        """
        report = self.report
        valid = [c for c in report.candidates if c.status == "ok"]
        if self.cfg.dispatch == "per_batch":
            best = min(valid, key=functools.partial(p50_at, batch=report.batch_sizes[0]))
        else:
            best = min(valid, key=score)
        best.status = "chosen"
        report.chosen = best.backend
        for c in valid:
            if c is not best:
                c.reason = (f"slower: p50 {c.p50_ms:.3f} ms vs {best.p50_ms:.3f} ms "
                            f"({best.backend}) at batch {report.batch_sizes[0]}")
        if native.p50_ms and best.p50_ms:
            report.speedup = round(native.p50_ms / best.p50_ms, 3)
        self.explain_losers(alone=best is native and len(valid) == 1)
        return best

    def explain_losers(self, *, alone: bool) -> None:
        """Log the failed and rejected candidates: a WARNING when native serves because of them."""
        tried = [c for c in self.report.candidates if c.status in ("failed", "rejected")]
        if alone and tried:
            self.report.fallback_reason = "no candidate passed: " + "; ".join(
                f"{c.backend} {c.status}" for c in tried)
            logger.warning("%s: serving on native: %s", self.handle.name, "; ".join(
                f"{c.backend} {c.status}: {_first_line(c.reason, 200)}" for c in tried))
            metrics.emit(metrics.FALLBACKS, 1, model=self.handle.name, backend="all",
                         reason="compile")
            return
        for c in tried:  # another backend serves: the losers' errors are logged for detail
            logger.info("%s: %s %s: %s", self.handle.name, c.backend, c.status,
                        _first_line(c.reason, 300))


def candidate_names(cfg: BoostConfig) -> list[str]:
    """The backends to try besides native (``auto``: every registered one; tags say which sit out)."""
    if cfg.backends == ("auto",):
        return [n for n in backend_names() if n != NATIVE]
    unknown = [n for n in cfg.backends if n not in backend_names()]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; known: "
                          f"{', '.join(backend_names())}")
    return [n for n in cfg.backends if n != NATIVE]


def _first_line(text: str, limit: int) -> str:
    return text.splitlines()[0][:limit] if text else ""
