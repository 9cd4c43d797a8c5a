"""The portable artifact directory (``yellowstone compile --out``): its layout, writing, reading."""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .backends import get_backend
from .cache import verify_manifest, write_manifest
from .dispatch import NATIVE, is_batch_size
from .errors import CacheError, ConfigError
from .hardware import detect
from .model import ModelHandle
from .report import Report

ARTIFACT_FORMAT = 1  # ``dispatch`` and ``extras`` are optional keys: format 1 readers ignore them
ARTIFACT_JSON = "yellowstone.json"

BucketDirs = Mapping[int | None, Path]  # batch size (None = dynamic) -> artifact directory


def bucket_dir(root: Path, bucket: int | None, backend: str | None = None) -> Path:
    """Where an artifact directory keeps ``bucket``'s artifact (``backend``: a dispatched extra)."""
    base = root / "artifacts" if backend is None else root / "dispatch" / backend
    return base / ("dynamic" if bucket is None else f"b{bucket}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArtifactMeta:
    """``yellowstone.json`` of an artifact directory: what it was built from, with, and for.

    The directory holds the first size's backend under ``artifacts/``, every other dispatched
    backend under ``dispatch/<backend>/`` (see :func:`bucket_dir`) and this file. ``backend``
    serves the first batch size; ``extras`` holds every other dispatched backend
    (``{name: {"backend_version", "dynamic_batch", "buckets"}}``) and ``dispatch`` maps each
    batch size (a decimal string) to its backend. Both are absent from single-backend dirs.
    """

    format: int
    yellowstone: str
    backend: str
    backend_version: str
    model_fingerprint: str
    hardware: str
    precision: str
    dynamic_batch: bool
    buckets: list[int]
    inputs: list[dict[str, Any]]
    outputs: list[str]
    report: dict[str, Any]
    dispatch: dict[str, str] = dataclasses.field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def bucket_keys(self) -> list[int | None]:
        """The buckets to load: the fixed sizes, and None for a dynamic-batch artifact."""
        return [*self.buckets, *([None] if self.dynamic_batch else [])]

    def extra_bucket_keys(self, name: str) -> list[int | None]:
        """The buckets of the dispatched extra ``name``."""
        extra = self.extras[name]
        return [*extra["buckets"], *([None] if extra["dynamic_batch"] else [])]

    @property
    def dispatch_sizes(self) -> dict[int, str]:
        """``dispatch`` keyed by batch size."""
        return {int(b): n for b, n in self.dispatch.items()}

    def check_fits(self, *, fingerprint: str, hardware: str, precision: str) -> None:
        """Raise CacheError unless the artifact was built from this model, here, at ``precision``.

        An fp32 artifact fits a reduced ``precision`` that fell back to fp32 when it was built
        (:func:`yellowstone.engine.fp32_instead`).
        """
        if self.model_fingerprint != fingerprint:
            raise CacheError("artifact was compiled from a different model")
        if self.hardware != hardware:
            raise CacheError(f"artifact was compiled for hardware {self.hardware}, "
                             f"this host is {hardware}")
        fell_back = (self.report.get("precision_fallback") or {}).get("precision")
        if self.precision != precision and not (self.precision == "fp32" and fell_back == precision):
            raise CacheError(f"artifact precision {self.precision} != requested {precision}")

    def route_dirs(self, root: Path, dispatch: Mapping[int, str]) -> dict[str, dict[int | None, Path]]:
        """The artifact dirs of the first backend and of every other one ``dispatch`` names.

        Raises CacheError when one of them is not installed here at the version it was built with.
        """
        routes: dict[str, dict[int | None, Path]] = {}
        if self.backend != NATIVE:
            check_installed(self.backend, self.backend_version)
            routes[self.backend] = {b: bucket_dir(root, b) for b in self.bucket_keys}
        for name in sorted(set(dispatch.values()) - {self.backend, NATIVE}):
            check_installed(name, self.extras[name]["backend_version"])
            routes[name] = {b: bucket_dir(root, b, name) for b in self.extra_bucket_keys(name)}
        return routes

    def write(self, directory: Path) -> None:
        """Write ``yellowstone.json`` into ``directory``."""
        text = json.dumps(dataclasses.asdict(self), indent=1, default=str)
        (directory / ARTIFACT_JSON).write_text(text)

    @classmethod
    def read(cls, directory: Path) -> ArtifactMeta:
        """Read and check ``yellowstone.json``; CacheError names every missing or ill-typed key."""
        try:
            data = json.loads((directory / ARTIFACT_JSON).read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{ARTIFACT_JSON} cannot be read: {exc}") from exc
        if not isinstance(data, dict):
            raise CacheError(f"{ARTIFACT_JSON} holds a {type(data).__name__}, not a mapping")
        fmt = data.get("format")
        if type(fmt) is not int or fmt != ARTIFACT_FORMAT:
            raise CacheError(f"artifact format {fmt!r} is not {ARTIFACT_FORMAT}")
        problems = _meta_problems(data)
        if problems:
            raise CacheError(f"{ARTIFACT_JSON} is malformed: {'; '.join(problems)}")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


_OPTIONAL_META = ("dispatch", "extras")


def _meta_problems(data: Mapping[str, Any]) -> list[str]:
    """Every key of :class:`ArtifactMeta` that ``data`` lacks or holds with the wrong type."""
    problems = []
    for name, hint in typing.get_type_hints(ArtifactMeta).items():
        kind = typing.get_origin(hint) or hint
        if name not in data:
            if name not in _OPTIONAL_META:
                problems.append(f"no {name!r}")
        elif not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)):
            problems.append(f"{name!r} is {type(data[name]).__name__}, not {kind.__name__}")
    buckets = data.get("buckets")
    if isinstance(buckets, list) and not all(is_batch_size(b) for b in buckets):
        problems.append(f"'buckets' {buckets!r} are not all batch sizes")
    if data.get("dynamic_batch") is False and not buckets and data.get("backend") != NATIVE:
        problems.append("no buckets and no dynamic batch")
    extras = data.get("extras")
    for name, extra in (extras.items() if isinstance(extras, dict) else ()):
        if not (isinstance(extra, dict) and isinstance(extra.get("backend_version"), str)
                and isinstance(extra.get("dynamic_batch"), bool)
                and isinstance(extra.get("buckets"), list)
                and all(is_batch_size(b) for b in extra["buckets"])
                and (extra["dynamic_batch"] or extra["buckets"])):
            problems.append(f"'extras' entry {name!r} is not {{backend_version, dynamic_batch, "
                            f"buckets}}: {extra!r}")
    dispatch = data.get("dispatch")
    if isinstance(dispatch, dict):
        known = {str(data.get("backend")), NATIVE, *(extras if isinstance(extras, dict) else ())}
        if not all(k.isdecimal() and int(k) > 0 and isinstance(v, str) and v in known
                   for k, v in dispatch.items()):
            problems.append(f"'dispatch' {dispatch!r} does not map batch sizes to its backends")
    return problems


def check_installed(name: str, version: str) -> None:
    """Raise CacheError unless backend ``name`` is available here at ``version``."""
    backend = get_backend(name)
    if not backend.probe().available:
        raise CacheError(f"artifact needs backend {name}, which is not available here")
    if backend.version() != version:
        raise CacheError(f"artifact built with {name} {version}, installed is {backend.version()}")


def read_artifact_dir(root: Path, *, fingerprint: str, hardware: str, precision: str) -> ArtifactMeta:
    """Verify ``root``'s manifest and read its meta; CacheError unless it fits this model and host."""
    verify_manifest(root)
    meta = ArtifactMeta.read(root)
    meta.check_fits(fingerprint=fingerprint, hardware=hardware, precision=precision)
    return meta


# -- writing ----------------------------------------------------------------------------------
def write_artifact_dir(out: Path, handle: ModelHandle, report: Report,
                       dirs: Mapping[str, BucketDirs]) -> Path:
    """Write an artifact directory of what ``report`` dispatches; return ``out``.

    ``report.chosen`` serves the first size; ``dirs`` holds each compiled backend's bucket dirs
    (native has none). ``out`` must be new or empty.
    """
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    first = report.chosen
    extras: dict[str, dict[str, Any]] = {}
    for name, buckets in dirs.items():
        extra = name != first
        _copy_buckets(out, buckets, name if extra else None)
        if extra:
            extras[name] = {"backend_version": get_backend(name).version(),
                            "dynamic_batch": None in buckets,
                            "buckets": sorted(b for b in buckets if b is not None)}
    first_dirs = dirs.get(first, {})
    meta = ArtifactMeta(
        format=ARTIFACT_FORMAT, yellowstone=__version__, backend=first,
        backend_version=get_backend(first).version(),
        model_fingerprint=handle.fingerprint, hardware=detect().fingerprint,
        precision=report.precision, dynamic_batch=None in first_dirs,
        buckets=sorted(b for b in first_dirs if b is not None),
        inputs=[s.to_dict() for s in handle.inputs], outputs=list(handle.output_names),
        report=report.to_dict(), extras=extras,
        dispatch={str(b): name for b, name in sorted(report.dispatch.items())}
        if len(set(report.dispatch.values())) > 1 else {})
    meta.write(out)
    write_manifest(out, meta.model_fingerprint, {"backend": first})
    return out


def _copy_buckets(out: Path, buckets: BucketDirs, extra: str | None) -> None:
    """Copy one backend's bucket dirs into ``out`` (``extra``: a backend besides the first)."""
    for bucket, src in buckets.items():
        # copyfile, not copy2: the cache's files are private (0600); a shipped directory
        # takes the umask like any file the user writes.
        shutil.copytree(src, bucket_dir(out, bucket, extra), copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("MANIFEST.json"))
