"""``boost``: try every candidate backend, validate, benchmark, choose, cache; and the result.

The search, in order: load the model and run it natively on fresh random inputs at every batch
size (the reference); for each candidate backend, compile (through the cache), validate against
the reference, benchmark; choose the fastest valid candidate (``native`` included). A stored
decision or a shipped artifact directory skips the search: the chosen artifact is loaded,
checked once against the framework, and serves.

Reduced precision (``bf16``, ``fp16``, ``int8``) is judged on more samples than fp32: besides
the rounds at each batch size, every candidate runs a batch of ``ACCURACY_SAMPLES`` fresh random
inputs, over which top-1 agreement is pooled. ``int8`` candidates calibrate on the user's
inputs (``calibration_inputs`` or the ``calibration`` .npz) or on a synthetic set from a fixed
seed; the calibration data is part of every int8 artifact's cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, metrics
from .backends import AUTO_EXCLUDED, CompiledModel, CompileRequest, backend_names, get_backend
from .bench import measure
from .cache import ArtifactCache, make_key, verify_manifest, write_manifest
from .config import BoostConfig, resolve_config
from .errors import BadRequestError, CacheError, ConfigError, ValidationError, YellowstoneError
from .hardware import detect
from .model import ModelHandle, load_model
from .report import Candidate, Report
from .spec import TensorSpec
from .validate import OutputError, compare, pooled_problems, raise_if_mismatched, weak_references

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
ARTIFACT_FORMAT = 1
ARTIFACT_JSON = "yellowstone.json"

Buckets = dict[int | None, CompiledModel]  # batch size (None = dynamic) -> compiled model
ACCURACY_SAMPLES = 64  # extra random samples each reduced-precision candidate is judged on
CALIBRATION_SEED = 20261125  # synthetic calibration is reproducible, so its artifacts cache


class Calibration:
    """The int8 calibration set: named feeds of batch 1, where they came from, and a digest."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]], source: str):
        self.feeds = tuple({k: np.ascontiguousarray(v) for k, v in f.items()} for f in feeds)
        self.source = source
        h = hashlib.sha256()
        for f in self.feeds:
            for k in sorted(f):
                h.update(k.encode())
                h.update(str(f[k].dtype).encode())
                h.update(str(f[k].shape).encode())
                h.update(f[k].tobytes())
        self.digest = h.hexdigest()[:16]


def calibration_set(handle: ModelHandle, cfg: BoostConfig,
                    given: Sequence[Mapping[str, Any]] = ()) -> Calibration:
    """The user's calibration inputs (argument, else ``cfg.calibration``), else a synthetic set.

    Each sample is split into batch-1 feeds. A sample that does not fit the model's inputs is a
    configuration error, named.
    """
    samples: list[dict[str, np.ndarray]] = []
    source = ""
    if given:
        samples = [{k: np.asarray(v) for k, v in g.items()} for g in given]
        source = f"given: {len(samples)} input sets"
    elif cfg.calibration:
        path = Path(cfg.calibration).expanduser()
        try:
            with np.load(path, allow_pickle=False) as data:
                samples = [{k: data[k] for k in data.files}]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"calibration file {path} could not be read: {exc}") from exc
        source = f"file {path.name}"
    if samples:
        feeds: list[dict[str, np.ndarray]] = []
        for sample in samples:
            missing = [s.name for s in handle.inputs if s.name not in sample]
            if missing:
                raise ConfigError(f"calibration inputs lack {', '.join(missing)}; the model "
                                  f"takes {', '.join(s.name for s in handle.inputs)}")
            try:
                handle.check_feeds({s.name: sample[s.name] for s in handle.inputs})
            except BadRequestError as exc:
                raise ConfigError(f"calibration inputs do not fit the model: {exc}") from exc
            if handle.batched:
                n = int(sample[handle.inputs[0].name].shape[0])
                feeds += [{s.name: sample[s.name][i:i + 1] for s in handle.inputs} for i in range(n)]
            else:
                feeds.append({s.name: sample[s.name] for s in handle.inputs})
        if not given:  # a file may hold more than calibration_samples
            feeds = feeds[:cfg.calibration_samples]
        return Calibration(feeds, f"{source}, {len(feeds)} samples")
    n = cfg.calibration_samples
    feeds = [handle.random_feeds(batch=1 if handle.batched else None, seed=CALIBRATION_SEED + i)
             for i in range(n)]
    return Calibration(feeds, f"synthetic: {n} random samples (seed {CALIBRATION_SEED})")


class BoostedModel:
    """A model served by the backend ``boost`` chose; called exactly like the original.

    ``run(feeds)`` is the numpy entry point the server plugins use; ``__call__`` takes and
    returns what the original model takes and returns. A failing compiled call is served by the
    framework instead, logged and counted; after ``max_runtime_failures`` the model stays native.
    """

    def __init__(self, handle: ModelHandle, compiled: Buckets | None, report: Report,
                 config: BoostConfig, artifact_dirs: Mapping[int | None, Path] | None = None):
        self.handle = handle
        self.report = report
        self.config = config
        self._compiled = compiled
        self._artifact_dirs = dict(artifact_dirs or {})
        self._failures = 0
        self._lock = threading.Lock()
        self.name = report.model
        metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model=self.name, backend=self.backend)

    # -- what serves ------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend serving now (``native`` after a fallback)."""
        return self.report.chosen

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Named input specs (dim 0 dynamic when the model is batched)."""
        return self.handle.inputs

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names, in output order."""
        return self.handle.output_names

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call like the original model; same argument and result types."""
        if self._compiled is None:
            return self.handle.call_native(*args, **kwargs)
        feeds = self.handle.feeds_from_call(args, kwargs)
        return self.handle.wrap_outputs(self.run(feeds), args, kwargs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on named numpy feeds; return outputs in ``output_names`` order."""
        self.handle.check_feeds(feeds)
        compiled = self._compiled
        if compiled is None:
            return self.handle.run(feeds)
        t0 = time.perf_counter()
        try:
            outputs = _run_buckets(compiled, feeds, self.handle.batched)
        except BadRequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure falls back for this call
            self._runtime_failure(exc)
            return self.handle.run(feeds)
        metrics.emit(metrics.INFERENCE_MS, (time.perf_counter() - t0) * 1e3, "ms",
                     model=self.name, backend=self.backend)
        return outputs

    def run_dict(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like :meth:`run`, keyed by output name."""
        return dict(zip(self.output_names, self.run(feeds)))

    def _runtime_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            backend = self.report.chosen
            logger.warning("%s: %s failed at run time (%s: %s); this call is served by native",
                           self.name, backend, type(exc).__name__, exc)
            metrics.emit(metrics.FALLBACKS, 1, model=self.name, backend=backend, reason="runtime")
            if self._failures >= self.config.max_runtime_failures and self._compiled is not None:
                self._compiled = None
                self.report.fallback_reason = (f"{backend} failed {self._failures} times at run "
                                               f"time; last error: {exc}")
                self.report.chosen = "native"
                logger.warning("%s: switching to native for good: %s", self.name,
                               self.report.fallback_reason)
                metrics.emit(metrics.BACKEND_IN_USE, 0, "gauge", model=self.name, backend=backend)
                metrics.emit(metrics.BACKEND_IN_USE, 1, "gauge", model=self.name, backend="native")

    # -- shipping ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Write a portable artifact directory (``yellowstone compile --out``) and return it."""
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not empty; choose a new directory")
        out.mkdir(parents=True, exist_ok=True)
        for bucket, src in self._artifact_dirs.items():
            dst = out / "artifacts" / ("dynamic" if bucket is None else f"b{bucket}")
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("MANIFEST.json"))
        backend = self.report.chosen
        meta: dict[str, Any] = {
            "format": ARTIFACT_FORMAT, "yellowstone": __version__, "backend": backend,
            "backend_version": get_backend(backend).version(),
            "model_fingerprint": self.handle.fingerprint, "hardware": detect().fingerprint,
            "precision": self.report.precision, "dynamic_batch": None in self._artifact_dirs,
            "buckets": sorted(b for b in self._artifact_dirs if b is not None),
            "inputs": [s.to_dict() for s in self.inputs], "outputs": list(self.output_names),
            "report": self.report.to_dict(),
        }
        (out / ARTIFACT_JSON).write_text(json.dumps(meta, indent=1, default=str))
        write_manifest(out, meta["model_fingerprint"], {"backend": backend})
        return out


# ==========================================================================================
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
    say = progress or (lambda msg: logger.info("%s", msg))
    cfg = resolve_config(config, **options)
    handle = load_model(model, example_inputs, input_specs=input_specs)
    hw = detect()
    sizes = list(cfg.batch_sizes) if handle.batched else [None]
    calib = calibration_set(handle, cfg, calibration_inputs) if cfg.precision == "int8" else None
    report = Report(model=handle.name, precision=cfg.precision, fingerprint=handle.fingerprint,
                    task=cfg.task, calibration=calib.source if calib else "",
                    hardware=hw.fingerprint,
                    batch_sizes=[b for b in sizes if b is not None] or [_example_batch(handle)],
                    inputs=[s.to_dict() for s in handle.inputs], outputs=list(handle.output_names))
    if cfg.killed:
        report.candidates = [Candidate(backend="native", status="chosen",
                                       reason="boosting is off (backends=native)")]
        logger.info("%s: boosting is off; serving on native", handle.name)
        return _finish(handle, None, report, cfg, started, {})

    fallback_note = ""
    if artifact_dir is not None:
        try:
            return _from_artifact_dir(Path(artifact_dir), handle, cfg, report, started, say)
        except (YellowstoneError, OSError) as exc:
            fallback_note = f"artifact {artifact_dir} not used: {exc}"
            logger.warning("%s: %s; compiling here instead", handle.name, fallback_note)
            metrics.emit(metrics.FALLBACKS, 1, model=handle.name, backend="artifact",
                         reason="artifact")

    cache = ArtifactCache(cfg.cache_dir) if cfg.cache else None
    names = _candidate_names(cfg)
    decision_key = make_key(kind="decision", model=handle.fingerprint, hardware=hw.fingerprint,
                            inputs=[s.to_dict() for s in handle.inputs], config=cfg.to_dict(),
                            candidates=names, calibration=calib.digest if calib else "",
                            yellowstone=__version__)
    if cache is not None:
        decision = cache.get_decision(decision_key)
        if decision is not None:
            warm = _warm_start(decision, handle, cfg, cache, report, started, say, calib)
            if warm is not None:
                return warm

    boosted = _search(handle, cfg, names, cache, report, sample_inputs, say, started, calib)
    boosted.report.fallback_reason = boosted.report.fallback_reason or fallback_note
    if cache is not None and boosted.report.chosen != "native":
        chosen = boosted.report.candidate(boosted.report.chosen)
        cache.put_decision(decision_key, {
            "backend": boosted.report.chosen,
            "buckets": chosen.buckets if chosen else None,
            "report": boosted.report.to_dict(),
        })
    elif cache is not None:
        cache.put_decision(decision_key, {"backend": "native", "buckets": None,
                                          "report": boosted.report.to_dict()})
    return boosted


def _example_batch(handle: ModelHandle) -> int:
    first = next(iter(handle.example_feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def _candidate_names(cfg: BoostConfig) -> list[str]:
    if cfg.backends == ("auto",):
        return [n for n in backend_names() if n != "native"]  # AUTO_EXCLUDED ones are reported
    unknown = [n for n in cfg.backends if n not in backend_names()]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; known: "
                          f"{', '.join(backend_names())}")
    return [n for n in cfg.backends if n != "native"]


def _finish(handle: ModelHandle, compiled: Buckets | None, report: Report, cfg: BoostConfig,
            started: float, dirs: Mapping[int | None, Path]) -> BoostedModel:
    report.load_s = round(time.perf_counter() - started, 3)
    if report.chosen != "native" or report.cache == "miss":
        metrics.emit(metrics.COMPILE_SECONDS if report.cache == "miss" else metrics.LOAD_SECONDS,
                     report.load_s, "s", model=report.model, backend=report.chosen)
    logger.info("%s: serving on %s (%s, cache %s, %.2f s)", report.model, report.chosen,
                report.precision, report.cache, report.load_s)
    return BoostedModel(handle, compiled, report, cfg, dirs)


def _artifact_key(handle: ModelHandle, backend: str, bucket: int | None, cfg: BoostConfig,
                  calib: Calibration | None = None) -> str:
    b = get_backend(backend)
    return make_key(kind="artifact", model=handle.fingerprint, backend=backend,
                    backend_version=b.version(), hardware=detect().fingerprint,
                    inputs=[s.to_dict() for s in handle.specs_for(bucket)],
                    precision=cfg.precision, threads=cfg.effective_threads,
                    calibration=calib.digest if calib else "",
                    options=dict(cfg.options.get(backend, {})), yellowstone=__version__)


def _request(backend: str, bucket: int | None, cfg: BoostConfig,
             calib: Calibration | None = None) -> CompileRequest:
    return CompileRequest(batch=bucket, precision=cfg.precision, threads=cfg.effective_threads,
                          shared=cfg.workers > 1, options=dict(cfg.options.get(backend, {})),
                          calibration=calib.feeds if calib else (),
                          cache_dir=cfg.cache_dir if cfg.cache else None)


def _precision_problem(backend: Any, precision: str) -> str | None:
    """Why ``backend`` cannot serve ``precision`` here (a backend without the check: fp32 only)."""
    check = getattr(backend, "supports_precision", None)
    if check is None:
        return None if precision == "fp32" else f"{backend.name} serves fp32 only"
    return check(precision)


def _compile_buckets(handle: ModelHandle, name: str, buckets: Sequence[int | None],
                     cfg: BoostConfig, cache: ArtifactCache | None,
                     calib: Calibration | None = None) -> tuple[Buckets, dict, bool]:
    """Compile (or load from cache) one artifact per bucket; return them, their dirs, all-hit."""
    backend = get_backend(name)
    compiled: Buckets = {}
    dirs: dict[int | None, Path] = {}
    all_hit = True
    for bucket in buckets:
        req = _request(name, bucket, cfg, calib)
        key = _artifact_key(handle, name, bucket, cfg, calib)

        def build(d: Path, req: CompileRequest = req) -> CompiledModel:
            return backend.compile(handle, req, d)

        def load(d: Path, req: CompileRequest = req) -> CompiledModel:
            return backend.load(handle, req, d)

        if cache is not None and backend.cacheable:
            meta = {"backend": name, "bucket": bucket, "precision": cfg.precision}
            compiled[bucket], dirs[bucket], hit = cache.get_or_build(key, load, build, meta)
            all_hit = all_hit and hit
        else:
            d = Path(tempfile.mkdtemp(prefix=f"yellowstone-{name}-"))
            compiled[bucket], dirs[bucket] = build(d), d
            all_hit = False
    return compiled, dirs, all_hit


def _run_buckets(compiled: Buckets, feeds: Mapping[str, np.ndarray],
                 batched: bool) -> list[np.ndarray]:
    """Run on the dynamic artifact, or pad up to the nearest bucket (chunks past the largest)."""
    if None in compiled or not batched:
        return next(iter(compiled.values())).run(feeds)
    n = int(next(iter(feeds.values())).shape[0])
    if n in compiled:
        return compiled[n].run(feeds)
    sizes = sorted(b for b in compiled if b is not None)
    bucket = next((b for b in sizes if b >= n), sizes[-1])
    if n > bucket:  # larger than every bucket: run in chunks of the largest
        parts = [_run_buckets(compiled, {k: v[i:i + bucket] for k, v in feeds.items()}, batched)
                 for i in range(0, n, bucket)]
        return [np.concatenate(outs) for outs in zip(*parts)]
    padded = {k: np.concatenate([v, np.repeat(v[-1:], bucket - n, axis=0)]) for k, v in feeds.items()}
    return [o[:n] for o in compiled[bucket].run(padded)]


def _validation_sets(handle: ModelHandle, cfg: BoostConfig, sizes: Sequence[int | None],
                     samples: Sequence[Mapping[str, np.ndarray]]) -> list[tuple[str, dict, list]]:
    """Fresh random inputs (per batch size, per round) plus user samples, with native outputs."""
    sets = []
    seed = int(time.time_ns() % 2**31)  # fresh inputs every boost
    for b in sizes:
        for r in range(cfg.validation_rounds):
            feeds = handle.random_feeds(batch=b, seed=seed + 1000 * (b or 0) + r)
            sets.append((f"batch {b}, random round {r + 1}" if b else f"random round {r + 1}",
                         feeds, handle.run(feeds)))
    if cfg.precision != "fp32" and handle.batched:
        feeds = handle.random_feeds(batch=ACCURACY_SAMPLES, seed=seed + 999)
        sets.append((f"accuracy set of {ACCURACY_SAMPLES} samples", feeds, handle.run(feeds)))
    for i, sample in enumerate(samples):
        feeds = {k: np.asarray(v) for k, v in sample.items()}
        sets.append((f"sample {i + 1}", feeds, handle.run(feeds)))
    return sets


def _validate(name: str, handle: ModelHandle, compiled: Buckets, cfg: BoostConfig,
              sets: Sequence[tuple[str, dict, list]],
              errors: dict[str, OutputError] | None = None) -> dict[str, OutputError]:
    """Check ``compiled`` on every set; fill ``errors`` (also when it raises) and raise on mismatch."""
    errors = {} if errors is None else errors
    problems: list[str] = []
    for label, feeds, ref in sets:
        got = _run_buckets(compiled, feeds, handle.batched)
        problems += compare(handle.output_names, ref, got, cfg.precision, task=cfg.task,
                            errors=errors, context=label)
    problems += pooled_problems(errors, cfg.precision, cfg.task)
    raise_if_mismatched(name, problems)
    return errors


def _record_errors(cand: Candidate, errors: Mapping[str, OutputError]) -> None:
    if errors:
        cand.max_abs_err = max(e.max_abs_err for e in errors.values())
        cand.max_rel_err = max(e.max_rel_err for e in errors.values())
        tops = [e.top1_agreement for e in errors.values() if e.top1_agreement is not None]
        cand.top1_agreement = min(tops) if tops else None
        cosines = [e.mean_cosine for e in errors.values() if e.mean_cosine is not None]
        cand.mean_cosine = min(cosines) if cosines else None


def _bench(cand: Candidate, run: Callable[[dict], object], handle: ModelHandle,
           sizes: Sequence[int | None], budget: float) -> None:
    for b in sizes:
        feeds = handle.random_feeds(batch=b, seed=7)
        t = measure(functools.partial(run, feeds), budget_s=budget)
        cand.latency_ms[b or _example_batch(handle)] = {"p50_ms": round(t.p50_ms, 4),
                                                        "p90_ms": round(t.p90_ms, 4),
                                                        "iters": t.iters}
    first = cand.latency_ms[next(iter(cand.latency_ms))]
    cand.p50_ms, cand.p90_ms = first["p50_ms"], first["p90_ms"]


def _score(cand: Candidate) -> float:
    """Geometric mean of p50 over the served batch sizes (lower is better)."""
    vals = [v["p50_ms"] for v in cand.latency_ms.values()]
    return math.exp(sum(math.log(max(v, 1e-9)) for v in vals) / len(vals)) if vals else math.inf


def _search(handle: ModelHandle, cfg: BoostConfig, names: Sequence[str],
            cache: ArtifactCache | None, report: Report,
            samples: Sequence[Mapping[str, np.ndarray]], say: Progress,
            started: float, calib: Calibration | None = None) -> BoostedModel:
    sizes: list[int | None] = list(cfg.batch_sizes) if handle.batched else [None]
    say(f"{handle.name}: reference run on native at batch sizes "
        f"{', '.join(str(b) for b in report.batch_sizes)}")
    sets = _validation_sets(handle, cfg, sizes, samples)
    report.warnings = weak_references(handle.output_names, sets[0][2])
    for warning in report.warnings:
        logger.warning("%s: %s", handle.name, warning)
    native = Candidate(backend="native", status="ok", version=get_backend("native").version())
    _bench(native, handle.run, handle, sizes, cfg.time_budget_s)
    report.candidates = [native]
    built: dict[str, tuple[Buckets, dict]] = {}
    for i, name in enumerate(names, 1):
        cand = Candidate(backend=name)
        report.candidates.append(cand)
        try:
            if cfg.backends == ("auto",) and name in AUTO_EXCLUDED:
                cand.status, cand.reason = "unavailable", AUTO_EXCLUDED[name]
                continue
            backend = get_backend(name)
            avail = backend.probe()
            cand.version = avail.version
            if not avail.available:
                cand.status, cand.reason = "unavailable", avail.reason
                continue
            why_not = backend.supports(handle) or _precision_problem(backend, cfg.precision)
            if why_not:
                cand.status, cand.reason = "unavailable", why_not
                continue
            buckets: list[int | None] = ([None] if (backend.dynamic_batch and cfg.dynamic_batch)
                                         or not handle.batched else list(sizes))
            cand.buckets = None if buckets == [None] else [b for b in buckets if b is not None]
            say(f"[{i}/{len(names)}] {name}: compiling"
                + (f" buckets {cand.buckets}" if cand.buckets else " (dynamic batch)"))
            t0 = time.perf_counter()
            built_now, dirs_now, hit = _compile_buckets(handle, name, buckets, cfg, cache, calib)
            cand.compile_s = round(time.perf_counter() - t0, 3)
            cand.cache = "hit" if hit else "miss"
            say(f"[{i}/{len(names)}] {name}: validating ({len(sets)} input sets)")
            errors: dict[str, OutputError] = {}
            try:
                _validate(name, handle, built_now, cfg, sets, errors)
            finally:  # a rejected candidate's errors are in the report too: what it would cost
                _record_errors(cand, errors)
            say(f"[{i}/{len(names)}] {name}: benchmarking")
            _bench(cand, functools.partial(_run_buckets, built_now, batched=handle.batched),
                   handle, sizes, cfg.time_budget_s)
            cand.status = "ok"
            built[name] = (built_now, dirs_now)
            say(f"[{i}/{len(names)}] {name}: ok, p50 {cand.p50_ms:.2f} ms "
                f"(native {native.p50_ms:.2f} ms)")
        except ValidationError as exc:
            cand.status, cand.reason = "rejected", str(exc)
            say(f"[{i}/{len(names)}] {name}: rejected: {exc}")
        except Exception as exc:  # noqa: BLE001 - any candidate failure is recorded, not fatal
            cand.status = "failed"
            cand.reason = str(exc) if isinstance(exc, YellowstoneError) else \
                f"{type(exc).__name__}: {exc}"
            logger.debug("%s failed", name, exc_info=True)
            say(f"[{i}/{len(names)}] {name}: failed: {cand.reason.splitlines()[0][:200]}")
    valid = [c for c in report.candidates if c.status == "ok"]
    best = min(valid, key=_score)
    best.status = "chosen"
    report.chosen = best.backend
    for c in valid:
        if c is not best:
            c.reason = (f"slower: p50 {c.p50_ms:.3f} ms vs {best.p50_ms:.3f} ms ({best.backend})"
                        f" at batch {report.batch_sizes[0]}")
    if best.backend == "native" and len(valid) == 1:
        tried = [c for c in report.candidates if c.status in ("failed", "rejected")]
        if tried:
            report.fallback_reason = "no candidate passed: " + "; ".join(
                f"{c.backend} {c.status}" for c in tried)
            logger.warning("%s: serving on native: %s", handle.name, "; ".join(
                f"{c.backend} {c.status}: {c.reason.splitlines()[0][:200] if c.reason else ''}"
                for c in tried))
            metrics.emit(metrics.FALLBACKS, 1, model=handle.name, backend="all", reason="compile")
    else:  # another backend serves: the losers' errors are in the report, and logged for detail
        for c in report.candidates:
            if c.status in ("failed", "rejected"):
                logger.info("%s: %s %s: %s", handle.name, c.backend, c.status,
                            c.reason.splitlines()[0][:300] if c.reason else "")
    if native.p50_ms and best.p50_ms:
        report.speedup = round(native.p50_ms / best.p50_ms, 3)
    compiled: Buckets | None = None
    dirs: dict[int | None, Path] = {}
    if best.backend in built:
        compiled, dirs = built[best.backend]
    report.cache = "hit" if best.cache == "hit" else "miss"
    return _finish(handle, compiled, report, cfg, started, dirs)


def _check_once(name: str, handle: ModelHandle, compiled: Buckets, cfg: BoostConfig) -> None:
    """One fresh random check against the framework before a loaded artifact serves."""
    sizes: list[int | None] = list(cfg.batch_sizes[:1]) if handle.batched else [None]
    one = BoostConfig.from_dict({"validation_rounds": 1}, base=cfg)
    _validate(name, handle, compiled, cfg, _validation_sets(handle, one, sizes, ()))


def _warm_start(decision: Mapping[str, Any], handle: ModelHandle, cfg: BoostConfig,
                cache: ArtifactCache, report: Report, started: float,
                say: Progress, calib: Calibration | None = None) -> BoostedModel | None:
    """Serve the stored decision's backend from cached artifacts; None means search again."""
    name = decision.get("backend", "native")
    stored = Report.from_dict(decision.get("report", {}))
    report.candidates = stored.candidates
    report.speedup = stored.speedup
    report.chosen = name
    report.cache = "hit"
    if name == "native":
        say(f"{handle.name}: cached decision: native is fastest here")
        return _finish(handle, None, report, cfg, started, {})
    buckets = decision.get("buckets")
    keys = [None] if buckets is None else list(buckets)
    backend = get_backend(name)
    if not backend.probe().available:
        logger.warning("%s: cached decision names %s, which is not available now; searching again",
                       handle.name, name)
        return None
    compiled: Buckets = {}
    dirs: dict[int | None, Path] = {}
    for bucket in keys:
        key = _artifact_key(handle, name, bucket, cfg, calib)
        path = cache.lookup(key)
        if path is None:
            say(f"{handle.name}: cached {name} artifact missing or corrupt; searching again")
            return None
        try:
            compiled[bucket] = backend.load(handle, _request(name, bucket, cfg), path)
        except YellowstoneError as exc:
            logger.warning("%s: cached %s artifact does not load (%s); rebuilding", handle.name,
                           name, exc)
            cache.discard(key)
            return None
        dirs[bucket] = path
    try:
        _check_once(name, handle, compiled, cfg)
    except ValidationError as exc:
        logger.warning("%s: cached %s artifact no longer matches the framework (%s); rebuilding",
                       handle.name, name, exc)
        for bucket in keys:
            cache.discard(_artifact_key(handle, name, bucket, cfg, calib))
        return None
    say(f"{handle.name}: cache hit: {name} loaded without compiling")
    return _finish(handle, compiled, report, cfg, started, dirs)


def _from_artifact_dir(path: Path, handle: ModelHandle, cfg: BoostConfig, report: Report,
                       started: float, say: Progress) -> BoostedModel:
    """Load what ``BoostedModel.save`` wrote; raise a YellowstoneError when it does not fit."""
    verify_manifest(path)
    meta = json.loads((path / ARTIFACT_JSON).read_text())
    if meta.get("format") != ARTIFACT_FORMAT:
        raise CacheError(f"artifact format {meta.get('format')} is not {ARTIFACT_FORMAT}")
    if meta["model_fingerprint"] != handle.fingerprint:
        raise CacheError("artifact was compiled from a different model")
    here = detect().fingerprint
    if meta["hardware"] != here:
        raise CacheError(f"artifact was compiled for hardware {meta['hardware']}, this host is {here}")
    name = meta["backend"]
    backend = get_backend(name)
    if not backend.probe().available:
        raise CacheError(f"artifact needs backend {name}, which is not available here")
    if backend.version() != meta["backend_version"]:
        raise CacheError(f"artifact built with {name} {meta['backend_version']}, "
                         f"installed is {backend.version()}")
    if meta["precision"] != cfg.precision:
        raise CacheError(f"artifact precision {meta['precision']} != requested {cfg.precision}")
    keys: list[int | None] = [None] if meta["dynamic_batch"] else list(meta["buckets"])
    compiled: Buckets = {}
    dirs: dict[int | None, Path] = {}
    for bucket in keys:
        d = path / "artifacts" / ("dynamic" if bucket is None else f"b{bucket}")
        compiled[bucket] = backend.load(handle, _request(name, bucket, cfg), d)
        dirs[bucket] = d
    _check_once(name, handle, compiled, cfg)
    stored = Report.from_dict(meta.get("report", {}))
    report.candidates, report.speedup = stored.candidates, stored.speedup
    report.chosen, report.cache = name, "artifact"
    say(f"{handle.name}: loaded {name} from artifact directory {path}")
    return _finish(handle, compiled, report, cfg, started, dirs)
