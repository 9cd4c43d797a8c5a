"""Placing one C path's shim directory (a cache entry or a given one) and validating it against TensorFlow."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yellowstone.errors import CompilationError, ModelLoadError

from .manifest import MANIFEST, MODEL_FILES, SHIM_FORMAT, identity_of, write_shim_manifest
from .signatures import SHIM_BACKENDS

if TYPE_CHECKING:
    from yellowstone import BoostConfig, BoostedModel
    from yellowstone.model import ModelHandle

    from ..native import ShimModel

logger = logging.getLogger(__name__)

BOOSTED_DIR = "boosted"  # what BoostedModel.save wrote, when the backend serves the boost


def serves(boosted: BoostedModel, backend: str) -> bool:
    """True when ``backend``'s artifacts are part of ``boosted`` (it serves some batch size)."""
    return backend == boosted.report.chosen or backend in boosted.report.dispatch.values()


def _model_file(base: Path, backend: str) -> Path:
    """``backend``'s model file under an artifact directory: flat, dynamic, else the first bucket."""
    name = MODEL_FILES[backend]
    buckets = sorted(base.glob(f"b*/{name}"), key=lambda p: int(p.parent.name[1:] or 0))
    for path in (base / name, base / "dynamic" / name, *buckets):
        if path.exists():
            return path
    raise CompilationError(f"{base}: no {name} for the shim ({backend})")


def write_shim_dir(boosted: BoostedModel, sig: Any, signature: str, out: str | os.PathLike[str], *,
                   backend: str | None = None, source: str | os.PathLike[str] | None = None) -> Path:
    """Write the shim directory for ``backend`` (default: what serves ``boosted``) at ``out``.

    ``source``: the core's artifact directory of a backend that does not serve ``boosted``
    (copied to ``out/<backend>``); otherwise ``BoostedModel.save`` writes ``out/boosted``.
    """
    out = Path(out)
    backend = backend or boosted.report.chosen
    if backend not in SHIM_BACKENDS:
        raise CompilationError(f"the shim runs {' and '.join(SHIM_BACKENDS)}, not {backend}")
    if source is not None:
        base = out / backend
        shutil.copytree(source, base, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("MANIFEST.json"))
        model = base / MODEL_FILES[backend]
    else:
        saved = boosted.save(out / BOOSTED_DIR)
        chosen = backend == boosted.report.chosen
        model = _model_file(saved / "artifacts" if chosen else saved / "dispatch" / backend, backend)
    identity = identity_of(boosted.handle, boosted.config, backend)
    write_shim_manifest(out, model.relative_to(out), backend=backend, signature=signature, sig=sig,
                        cfg=boosted.config, identity=identity)
    return out


def place_shim_dir(boosted: BoostedModel, sig: Any, signature: str, *,
                   out_dir: str | os.PathLike[str] | None = None, backend: str | None = None,
                   source: str | os.PathLike[str] | None = None) -> Path | None:
    """Write the shim directory for ``backend`` and return it; None when it has nowhere to go.

    ``out_dir`` (``--yellowstone_artifact_dir``): rewritten there. Otherwise it is an entry of
    the core's content-addressed cache (``cache_dir``), keyed by what the artifact was built
    from, and reused while its manifest holds. With the cache off and no ``out_dir`` there is
    no place for the shim's files.
    """
    import yellowstone

    backend = backend or boosted.report.chosen
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        return write_shim_dir(boosted, sig, signature, out, backend=backend, source=source)
    cfg = boosted.config
    if not cfg.cache:
        logger.warning("%s[%s]: the cache is off and no artifact directory is set, so the shim "
                       "has nowhere to keep its files; TensorFlow serves this signature", boosted.name,
                       signature)
        return None
    from yellowstone.cache import ArtifactCache, make_key

    report = boosted.report
    cand = report.candidate(backend)
    key = make_key(kind="tfserving-shim", format=SHIM_FORMAT, signature=signature, model=report.fingerprint,
                   backend=backend, backend_version=cand.version if cand else None, hardware=report.hardware,
                   precision=report.precision, config=cfg.to_dict(), yellowstone=yellowstone.__version__)

    def load(path: Path) -> Path:
        if not (path / MANIFEST).is_file():
            raise ModelLoadError(f"{path} has no {MANIFEST}")
        return path

    _, path, _ = ArtifactCache(cfg.cache_dir).get_or_build(
        key, load, lambda d: write_shim_dir(boosted, sig, signature, d, backend=backend, source=source),
        {"plugin": "tfserving", "signature": signature, "backend": backend})
    return path


def cached_artifact(boosted: BoostedModel, backend: str) -> Path | None:
    """The core's cache entry for ``backend``'s artifact of this boost (it validated, then lost).

    Only the serving backends' artifacts are part of a BoostedModel; a validated loser's stays in
    the cache under the key the core built it with (None with the cache off).
    """
    cfg, cand = boosted.config, boosted.report.candidate(backend)
    if not cfg.cache or cand is None:
        return None
    from yellowstone.cache import ArtifactCache
    from yellowstone.engine import BoostRun, calibration_set

    calib = calibration_set(boosted.handle, cfg) if cfg.precision == "int8" else None
    key = BoostRun(boosted.handle, cfg, calibration=calib).artifact_key(
        backend, None if not cand.buckets or None in cand.buckets else cand.buckets[0]
    )
    return ArtifactCache(cfg.cache_dir).lookup(key)


def check_c_path(shim: ShimModel, handle: ModelHandle, cfg: BoostConfig) -> None:
    """Run the shim's C path against TensorFlow under the core's validation policy.

    Fresh random inputs at batch 1, 2, ... (one per validation round) and, for a signature with
    dynamic dims beyond the batch, at the core's dim points (each range's ends and an odd size);
    outputs are judged by ``yellowstone.validate`` with the boost's precision and task.

    Raises:
        ValidationError: a mismatch, every one listed.
    """
    from yellowstone.judge import dim_points
    from yellowstone.validate import compare, pooled_problems, raise_if_mismatched

    names = list(handle.output_names)
    rounds = [(f"shim round {r + 1}", 1 + r, None) for r in range(cfg.validation_rounds)]
    rounds += [(f"shim at {dims}", 1, dims) for dims in dim_points(handle)]
    errors: dict[str, Any] = {}
    problems: list[str] = []
    for label, batch, dims in rounds:
        feeds = handle.random_feeds(batch=batch, dims=dims)
        out = shim.run(feeds)
        problems += compare(names, handle.run(feeds), [out[n] for n in names], cfg.precision, task=cfg.task,
                            errors=errors, context=label)
    problems += pooled_problems(errors, cfg.precision, cfg.task)
    raise_if_mismatched(f"the shim ({shim.backend}, C)", problems)
