"""Content-addressed store of compiled artifacts and boost decisions.

Layout under the cache root::

    artifacts/<k[:2]>/<key>/          one compiled artifact (files a backend wrote)
        MANIFEST.json                 {"key", "files": {relpath: sha256}, "meta": {...}}
    decisions/<key>.json              which backend won, its buckets and artifact keys, report
    locks/<key>.lock                  flock: one process builds a key, the others wait for it
    tmp/                              entries being written; renamed into place when complete

Keys hash the model's content, input signature, backend and version, hardware fingerprint,
precision, options and yellowstone's version, never a path. An entry whose files do not match
its manifest is discarded (with a warning) and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import CacheError

logger = logging.getLogger(__name__)
T = TypeVar("T")
MANIFEST = "MANIFEST.json"


def make_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path, key: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Hash every file under ``directory`` and write MANIFEST.json there."""
    files = {str(p.relative_to(directory)): file_sha256(p)
             for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"key": key, "files": files, "meta": dict(meta)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_manifest(directory: Path, key: str | None = None) -> dict[str, Any]:
    """Check every file against MANIFEST.json; raise CacheError naming what is wrong."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"{directory}: unreadable manifest ({exc})") from exc
    if key is not None and manifest.get("key") != key:
        raise CacheError(f"{directory}: manifest is for key {manifest.get('key')}, not {key}")
    problems = []
    for rel, digest in files.items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
        elif file_sha256(path) != digest:
            problems.append(f"{rel} hash mismatch")
    extra = {str(p.relative_to(directory)) for p in directory.rglob("*")
             if p.is_file() and p.name != MANIFEST} - set(files)
    problems += [f"{rel} not in manifest" for rel in sorted(extra)]
    if problems:
        raise CacheError(f"{directory}: corrupt entry: {'; '.join(problems)}")
    return manifest


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process ``flock`` on ``path`` for the duration of the block."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ArtifactCache:
    """The on-disk cache. Safe for several processes sharing one root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for sub in ("artifacts", "decisions", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def entry_dir(self, key: str) -> Path:
        """Where the artifact for ``key`` lives (whether or not it exists)."""
        return self.root / "artifacts" / key[:2] / key

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive inter-process lock on ``key`` (blocks while another process builds it)."""
        return file_lock(self.root / "locks" / f"{key}.lock")

    def lookup(self, key: str) -> Path | None:
        """Return the verified entry for ``key``; a corrupt entry is discarded with a warning."""
        path = self.entry_dir(key)
        if not path.exists():
            return None
        try:
            verify_manifest(path, key)
        except CacheError as exc:
            logger.warning("discarding cache entry %s and rebuilding it: %s", key[:12], exc)
            self.discard(key)
            return None
        return path

    def discard(self, key: str) -> None:
        """Remove an entry (moved aside first, so readers never see half of one)."""
        path = self.entry_dir(key)
        if path.exists():
            trash = self.root / "tmp" / f"discard-{key}-{uuid.uuid4().hex}"
            with contextlib.suppress(OSError):
                os.rename(path, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def store(self, key: str, build: Callable[[Path], T], meta: Mapping[str, Any]) -> tuple[T, Path]:
        """Run ``build(tmpdir)``, write its manifest, and move it into place atomically."""
        tmp = self.root / "tmp" / f"{key}-{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            result = build(tmp)
            write_manifest(tmp, key, meta)
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # only under the lock, so this is a discarded leftover
                self.discard(key)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return result, final

    def get_or_build(self, key: str, load: Callable[[Path], T], build: Callable[[Path], T],
                     meta: Mapping[str, Any]) -> tuple[T, Path, bool]:
        """Load the entry for ``key`` or build it; returns (result, entry dir, was_hit)."""
        with self.lock(key):
            path = self.lookup(key)
            if path is not None:
                try:
                    return load(path), path, True
                except Exception as exc:  # noqa: BLE001 - an unloadable entry is rebuilt
                    logger.warning("cache entry %s does not load (%s); rebuilding it", key[:12], exc)
                    self.discard(key)
            result, path = self.store(key, build, meta)
            return result, path, False

    # -- decisions ------------------------------------------------------------------------
    def get_decision(self, key: str) -> dict[str, Any] | None:
        """The stored decision for ``key``, or None (an unreadable one is discarded)."""
        path = self.root / "decisions" / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("discarding unreadable decision %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None

    def put_decision(self, key: str, decision: Mapping[str, Any]) -> None:
        """Write a decision atomically (tmp file + rename)."""
        path = self.root / "decisions" / f"{key}.json"
        tmp = self.root / "tmp" / f"{key}-{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(decision, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
