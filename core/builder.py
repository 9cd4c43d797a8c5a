"""Building and loading a backend's artifacts, one per bucket: keys, requests, scratch, check run."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from . import __version__
from .backends import Backend, CompiledModel, CompileRequest, get_backend
from .cache import ArtifactCache, make_key
from .calibration import Calibration
from .config import BoostConfig
from .dispatch import Buckets
from .errors import CacheError, YellowstoneError
from .judge import validate, validation_sets
from .model import ModelHandle


class Builder:
    """Compiles (through ``cache`` when set) or loads one model's artifacts on this host.

    Without the cache, artifacts go to temporary directories that :meth:`release_scratch` hands
    to the model serving from them, or removes.
    """

    def __init__(self, handle: ModelHandle, cfg: BoostConfig, calibration: Calibration | None,
                 hardware: str):
        self.handle = handle
        self.cfg = cfg
        self.calib = calibration
        self.hardware = hardware
        self.cache: ArtifactCache | None = None
        self._scratch: dict[str, list[tempfile.TemporaryDirectory[str]]] = {}

    def artifact_key(self, backend: str, bucket: int | None) -> str:
        """The cache key of ``backend``'s artifact for ``bucket``."""
        cfg = self.cfg
        return make_key(kind="artifact", model=self.handle.fingerprint, backend=backend,
                        backend_version=get_backend(backend).version(), hardware=self.hardware,
                        inputs=[s.to_dict() for s in self.handle.specs_for(bucket)],
                        precision=cfg.precision, threads=cfg.effective_threads,
                        calibration=self.calib.digest if self.calib else "",
                        options=dict(cfg.options.get(backend, {})), yellowstone=__version__)

    def request(self, backend: str, bucket: int | None) -> CompileRequest:
        """What ``backend`` is asked to build for ``bucket``."""
        cfg = self.cfg
        return CompileRequest(batch=bucket, precision=cfg.precision,
                              threads=cfg.effective_threads,
                              shared=cfg.workers > 1 or not cfg.spin_wait,
                              options=dict(cfg.options.get(backend, {})),
                              calibration=self.calib.feeds if self.calib else (),
                              cache_dir=self.cache.root if self.cache is not None else None)

    def compile(self, backend: Backend, buckets: Sequence[int | None],
                ) -> tuple[Buckets, dict[int | None, Path], bool]:
        """Compile (or load from cache) one artifact per bucket; return them, their dirs, all-hit."""
        name = backend.name
        compiled: Buckets = {}
        dirs: dict[int | None, Path] = {}
        all_hit = True
        for bucket in buckets:
            req = self.request(name, bucket)

            def build(d: Path, req: CompileRequest = req) -> CompiledModel:
                return backend.compile(self.handle, req, d)

            def load(d: Path, req: CompileRequest = req) -> CompiledModel:
                return backend.load(self.handle, req, d)

            if self.cache is not None and backend.cacheable:
                meta = {"backend": name, "bucket": bucket, "precision": self.cfg.precision}
                compiled[bucket], dirs[bucket], hit = self.cache.get_or_build(
                    self.artifact_key(name, bucket), load, build, meta)
                all_hit = all_hit and hit
            else:
                tmp = tempfile.TemporaryDirectory(prefix=f"yellowstone-{name}-",
                                                  ignore_cleanup_errors=True)
                self._scratch.setdefault(name, []).append(tmp)
                dirs[bucket] = Path(tmp.name)
                compiled[bucket] = build(dirs[bucket])
                all_hit = False
        return compiled, dirs, all_hit

    def load_checked(self, name: str, dirs: Mapping[int | None, Path],
                     size: int | None = None, *, threads: int = 0) -> Buckets:
        """Load ``name``'s artifacts from ``dirs`` and check them once against the framework.

        The check runs at ``size`` (the first batch size it serves), else the first served size.
        ``threads`` overrides the config's thread count (the artifact is the same). Raises
        CacheError when an artifact does not load or does not run, ValidationError when its
        outputs differ.
        """
        backend = get_backend(name)
        compiled: Buckets = {}
        for bucket, path in dirs.items():
            req = self.request(name, bucket)
            if threads:
                req = dataclasses.replace(req, threads=threads)
            try:
                compiled[bucket] = backend.load(self.handle, req, path)
            except Exception as exc:  # noqa: BLE001 - whatever the backend raises: unusable
                raise CacheError(f"{name} artifact {path.name} does not load: "
                                 f"{type(exc).__name__}: {exc}") from exc
        sizes: list[int | None] = [None]
        if self.handle.batched:
            sizes = [size] if size is not None else list(self.cfg.batch_sizes[:1])
        one = BoostConfig.from_dict({"validation_rounds": 1}, base=self.cfg)
        sets = validation_sets(self.handle, one, sizes, ())
        try:
            validate(name, self.handle, compiled, self.cfg, sets)
        except YellowstoneError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash in the check run: unusable artifact
            raise CacheError(f"{name} artifact fails its check run: "
                             f"{type(exc).__name__}: {exc}") from exc
        return compiled

    def release_scratch(self, serving: Iterable[str]) -> list[tempfile.TemporaryDirectory[str]]:
        """Hand over the scratch dirs of the ``serving`` backends; remove every other one."""
        kept = [tmp for name in serving for tmp in self._scratch.pop(name, [])]
        for dirs_of_loser in self._scratch.values():
            for tmp in dirs_of_loser:
                tmp.cleanup()
        self._scratch.clear()
        return kept
