"""Content-addressed store of compiled artifacts and boost decisions, private to one user.

Layout under the cache root::

    key                               HMAC-SHA256 key: 32 random bytes, 0600, made on first use
    artifacts/<k[:2]>/<key>/          one compiled artifact (files a backend wrote)
        MANIFEST.json                 {"key", "files": {relpath: sha256}, "meta": {...}, "mac"}
    decisions/<key>.json              {"key", "decision": {backend, buckets, report}, "mac"}
    locks/<key>.lock                  flock: one process builds a key, the others wait for it
    tmp/                              entries being written; renamed into place when complete

Keys hash the model's content, input signature, backend and version, hardware fingerprint,
precision, options and yellowstone's version, never a path.

An entry may hold native code (a TVM ``model.so``, an AOTInductor ``model.pt2``) that runs when
it is loaded, so the cache trusts only what this user wrote through it:

- Directories are 0700 and files 0600 whatever the umask.
- The root (followed if it is a symlink), its subdirectories and its key must belong to this
  user (``os.getuid()``) and not be writable by group or others. Otherwise the root is refused
  with one WARNING naming the path, and this process uses a private cache instead: a fresh
  ``tempfile.mkdtemp(prefix="yellowstone-cache-")`` (0700, removed at exit, shared by every
  ``ArtifactCache`` of that root in this process and its forks).
- No symlink is followed inside the root; every file is opened with ``O_NOFOLLOW``.
- Manifests and decisions carry ``"mac"``, an HMAC-SHA256 of their canonical JSON (without the
  mac) under the root's key; every file is hashed against its manifest before anything loads it.
  Unkeyed manifests (``BoostedModel.save``'s portable directories) are accepted by
  :func:`verify_manifest` without ``mac_key`` only, never by the cache.
- An entry or decision that is symlinked, another user's, group/other-writable, unauthenticated,
  corrupt, unreadable or malformed is discarded with a WARNING and counted in
  ``metrics.CACHE_DISCARDS`` (label ``reason``); the caller sees a miss and rebuilds.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from . import metrics
from .errors import CacheError

logger = logging.getLogger(__name__)
T = TypeVar("T")
MANIFEST = "MANIFEST.json"
KEY_FILE = "key"
KEY_BYTES = 32
_SUBDIRS = ("artifacts", "decisions", "locks", "tmp")
_KEY_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Rejected(CacheError):
    """Why a cache path is not trusted; ``reason`` is the CACHE_DISCARDS label."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def make_key(**parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# -- files without following symlinks ---------------------------------------------------------
def _check_owner(path: Path | str, st: os.stat_result) -> None:
    if st.st_uid != os.getuid():
        raise _Rejected(f"{path} is owned by uid {st.st_uid}, not {os.getuid()}", "foreign")
    if st.st_mode & 0o022:
        raise _Rejected(f"{path} is writable by group or others "
                        f"(mode {stat.S_IMODE(st.st_mode):o})", "permissions")


def _check_dir(path: Path) -> None:
    """Raise unless ``path`` is a real directory of this user, not group/other-writable."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _Rejected(f"{path} is a symlink", "symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise _Rejected(f"{path} is not a directory", "corrupt")
    _check_owner(path, st)


def _open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Rejected(f"{path} is a symlink", "symlink") from exc
        raise


def _read_file(path: Path, *, private: bool, secret: bool = False) -> bytes:
    """Bytes of the regular file ``path``; ``private``: it must be this user's own as well."""
    with os.fdopen(_open_nofollow(path, _READ), "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _Rejected(f"{path} is not a regular file", "corrupt")
        if private:
            _check_owner(path, st)
        if secret and st.st_mode & 0o077:
            raise _Rejected(f"{path} is readable by group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):o})", "permissions")
        return fh.read()


def _write_file(path: Path, data: bytes, *, private: bool, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` atomically (tmp file + rename); ``private``: mode 0600."""
    tmp = (tmp_dir or path.parent) / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = _open_nofollow(tmp, _CREATE, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if private:
                os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
        os.replace(tmp, path)  # replaces a symlink at ``path`` itself, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def file_sha256(path: Path) -> str:
    """sha256 of one regular file's bytes (a symlink is refused, not followed)."""
    h = hashlib.sha256()
    with os.fdopen(_open_nofollow(path, _READ), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise _Rejected(f"{path} is not a regular file", "corrupt")
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tree(directory: Path, *, private: bool) -> list[str]:
    """Relative paths of the files under ``directory`` but the manifest, without following links.

    A symlink or special file anywhere raises; with ``private`` so does anything that is not
    this user's own or is group/other-writable.
    """
    def fail(exc: OSError) -> None:
        raise exc

    files = []
    for top, dirs, names in os.walk(directory, onerror=fail):
        for name in dirs + names:
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, directory)
            if stat.S_ISLNK(st.st_mode):
                raise _Rejected(f"{directory}: {rel} is a symlink", "symlink")
            if private:
                _check_owner(path, st)
            if stat.S_ISREG(st.st_mode):
                files.append(rel)
            elif not stat.S_ISDIR(st.st_mode):
                raise _Rejected(f"{directory}: {rel} is not a regular file", "corrupt")
    return sorted(f for f in files if f != MANIFEST)


def _make_private(directory: Path) -> None:
    """Make every directory under ``directory`` 0700 and every file 0600 (no symlinks there)."""
    os.chmod(directory, 0o700)
    for top, dirs, names in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(top, name), 0o700)
        for name in names:
            os.chmod(os.path.join(top, name), 0o600)


# -- authenticated JSON -----------------------------------------------------------------------
def _mac(mac_key: bytes, kind: str, body: Mapping[str, Any]) -> str:
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(mac_key, kind.encode() + b"\0" + blob.encode(), hashlib.sha256).hexdigest()


def _check_mac(mac_key: bytes, kind: str, doc: Mapping[str, Any], where: str) -> None:
    body = {k: v for k, v in doc.items() if k != "mac"}
    mac = doc.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(mac_key, kind, body)):
        raise _Rejected(f"{where}: {kind} authentication failed (no or wrong mac: tampered with, "
                        "or not written by this cache)", "tampered")


def _json_roundtrip(obj: Any) -> Any:
    """What ``obj`` reads back as from JSON, so a mac over it verifies after a reload."""
    return json.loads(json.dumps(obj, default=str))


def write_manifest(directory: Path, key: str, meta: Mapping[str, Any], *,
                   mac_key: bytes | None = None) -> dict[str, Any]:
    """Hash every file under ``directory`` and write MANIFEST.json there.

    With ``mac_key`` (the cache) the manifest also carries its HMAC; without it (a portable
    artifact directory shipped to other hosts) it is unauthenticated.
    """
    directory = Path(directory)
    files = {rel: file_sha256(directory / rel) for rel in _tree(directory, private=False)}
    manifest: dict[str, Any] = _json_roundtrip({"key": key, "files": files, "meta": dict(meta)})
    if mac_key is not None:
        manifest["mac"] = _mac(mac_key, "manifest", manifest)
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    _write_file(directory / MANIFEST, data, private=mac_key is not None)
    return manifest


def verify_manifest(directory: Path, key: str | None = None, *,
                    mac_key: bytes | None = None) -> dict[str, Any]:
    """Check every file against MANIFEST.json; raise CacheError naming what is wrong.

    Symlinks and special files are refused everywhere. With ``mac_key`` (the cache) the
    manifest must carry a valid mac, and every file and directory must be this user's own and
    not group/other-writable.
    """
    directory = Path(directory)
    private = mac_key is not None
    try:
        manifest = json.loads(_read_file(directory / MANIFEST, private=private).decode())
        if not isinstance(manifest, dict):
            raise TypeError(f"a JSON {type(manifest).__name__}, not an object")
        files = manifest["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("'files' is not an object of sha256 strings")
    except _Rejected:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _Rejected(f"{directory}: unreadable manifest ({exc})", "unreadable") from exc
    if mac_key is not None:
        _check_mac(mac_key, "manifest", manifest, str(directory))
    if key is not None and manifest.get("key") != key:
        raise _Rejected(f"{directory}: manifest is for key {manifest.get('key')}, not {key}",
                        "corrupt")
    try:
        present = _tree(directory, private=private)
        problems = [f"{rel} missing" for rel in sorted(set(files) - set(present))]
        problems += [f"{rel} hash mismatch" for rel in present
                     if rel in files and file_sha256(directory / rel) != files[rel]]
    except OSError as exc:
        raise _Rejected(f"{directory}: unreadable entry ({exc})", "unreadable") from exc
    problems += [f"{rel} not in manifest" for rel in sorted(set(present) - set(files))]
    if problems:
        raise _Rejected(f"{directory}: corrupt entry: {'; '.join(problems)}", "corrupt")
    return manifest


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process ``flock`` on ``path`` (0600, never through a symlink)."""
    fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- decisions --------------------------------------------------------------------------------
def is_bucket_list(value: Any) -> bool:
    """A decision's ``buckets``: null (dynamic batch), or batch sizes and at most one null."""
    return value is None or (isinstance(value, list) and bool(value) and value.count(None) <= 1
                             and all(b is None or (isinstance(b, int) and not isinstance(b, bool)
                                                   and b > 0) for b in value))


def _check_decision(decision: Any) -> dict[str, Any]:
    """The decision if it has the shape ``boost`` writes, else raise naming what is wrong."""
    if not isinstance(decision, dict):
        raise _Rejected(f"decision is a JSON {type(decision).__name__}, not an object", "schema")
    problems = []
    if not isinstance(decision.get("backend"), str):
        problems.append("'backend' is not a string")
    if not is_bucket_list(decision.get("buckets")):
        problems.append("'buckets' is neither null nor a list of positive integers (and at most "
                        "one null: the dynamic batch)")
    if not isinstance(decision.get("report"), dict):
        problems.append("'report' is not an object")
    if problems:
        raise _Rejected("malformed decision: " + "; ".join(problems), "schema")
    return decision


# -- the fallback cache -----------------------------------------------------------------------
_fallback_lock = threading.Lock()
_fallbacks: dict[str, Path] = {}


def _private_fallback(refused: Path) -> Path:
    """This process's private cache standing in for the refused root ``refused``."""
    with _fallback_lock:
        path = _fallbacks.get(str(refused))
        if path is None or not path.is_dir():
            path = Path(tempfile.mkdtemp(prefix="yellowstone-cache-"))
            atexit.register(shutil.rmtree, path, True)
            _fallbacks[str(refused)] = path
        return path


def _count(reason: str) -> None:
    metrics.emit(metrics.CACHE_DISCARDS, 1, reason=reason)


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, _Rejected) else "unreadable"


class ArtifactCache:
    """The on-disk cache. Safe for several processes of one user sharing one root."""

    def __init__(self, root: Path):
        requested = Path(root)
        try:
            self.root, self._key = requested, self._open(requested)
        except (OSError, CacheError) as exc:
            self.root = _private_fallback(requested)
            logger.warning("refusing cache directory %s: %s; using the private cache %s for "
                           "this process instead", requested, exc, self.root)
            _count("untrusted_root")
            try:
                self._key = self._open(self.root)
            except (OSError, CacheError) as again:
                raise CacheError(f"private cache {self.root} is unusable too: {again}") from again

    @staticmethod
    def _open(root: Path) -> bytes:
        """Create or check ``root`` and its subdirectories; return its key."""
        with contextlib.suppress(FileExistsError):
            os.makedirs(root, mode=0o700)
            os.chmod(root, 0o700)  # only a root created here: a user's existing dir is kept
        st = os.stat(root)  # a symlinked root is the user's choice: check what it points to
        if not stat.S_ISDIR(st.st_mode):
            raise _Rejected(f"{root} is not a directory", "corrupt")
        _check_owner(root, st)
        for sub in _SUBDIRS:
            with contextlib.suppress(FileExistsError):
                os.mkdir(root / sub, 0o700)
            _check_dir(root / sub)
            os.chmod(root / sub, 0o700)
        return _load_key(root / KEY_FILE)

    def entry_dir(self, key: str) -> Path:
        """Where the artifact for ``key`` lives (whether or not it exists)."""
        return self.root / "artifacts" / _checked(key)[:2] / key

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive inter-process lock on ``key`` (blocks while another process builds it)."""
        path = self.root / "locks" / f"{_checked(key)}.lock"
        if path.is_symlink():
            logger.warning("discarding cache lock %s: it is a symlink", path)
            _count("symlink")
            path.unlink(missing_ok=True)
        return file_lock(path)

    def lookup(self, key: str) -> Path | None:
        """Return the verified entry for ``key``; an untrusted one is discarded with a warning."""
        path = self.entry_dir(key)
        try:
            _check_dir(path.parent)
            _check_dir(path)
            verify_manifest(path, key, mac_key=self._key)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with an entry, it is a miss
            logger.warning("discarding cache entry %s and rebuilding it: %s", key[:12], exc)
            _count(_reason(exc))
            self.discard(key)
            return None
        return path

    def discard(self, key: str) -> None:
        """Remove an entry (moved aside first, so readers never see half of one)."""
        path = self.entry_dir(key)
        try:
            _check_dir(path.parent)
        except FileNotFoundError:
            return
        except (OSError, CacheError):  # a symlinked or foreign shard: all of it goes
            self._remove(path.parent, f"discard-{key[:2]}")
            return
        if os.path.lexists(path):
            self._remove(path, f"discard-{key}")

    def _remove(self, path: Path, label: str) -> None:
        trash = self.root / "tmp" / f"{label}-{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            logger.warning("could not remove %s from the cache: %s", path, exc)
            return
        if os.path.islink(trash) or not os.path.isdir(trash):
            with contextlib.suppress(OSError):
                os.unlink(trash)
        else:
            shutil.rmtree(trash, ignore_errors=True)

    def store(self, key: str, build: Callable[[Path], T], meta: Mapping[str, Any]) -> tuple[T, Path]:
        """Run ``build(tmpdir)``, write its manifest, and move it into place atomically."""
        final = self.entry_dir(key)
        tmp = self.root / "tmp" / f"{key}-{os.getpid()}-{uuid.uuid4().hex}"
        os.mkdir(tmp, 0o700)
        try:
            os.chmod(tmp, 0o700)
            result = build(tmp)
            write_manifest(tmp, key, meta, mac_key=self._key)
            _make_private(tmp)
            self.discard(key)  # only under the lock, so whatever is there is a leftover
            with contextlib.suppress(FileExistsError):
                os.mkdir(final.parent, 0o700)
            _check_dir(final.parent)
            os.chmod(final.parent, 0o700)
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
                    _count("unloadable")
                    self.discard(key)
            result, path = self.store(key, build, meta)
            return result, path, False

    # -- decisions ------------------------------------------------------------------------
    def _decision_path(self, key: str) -> Path:
        return self.root / "decisions" / f"{_checked(key)}.json"

    def get_decision(self, key: str) -> dict[str, Any] | None:
        """The stored decision for ``key``, or None (an untrusted or malformed one is discarded)."""
        path = self._decision_path(key)
        try:
            doc = json.loads(_read_file(path, private=True).decode())
            if not isinstance(doc, dict):
                raise _Rejected(f"{path}: a JSON {type(doc).__name__}, not an object", "schema")
            _check_mac(self._key, "decision", doc, str(path))
            if doc.get("key") != key:
                raise _Rejected(f"{path}: decision is for key {doc.get('key')}", "corrupt")
            return _check_decision(doc.get("decision"))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with a decision, it is a miss
            logger.warning("discarding unreadable decision %s: %s", path, exc)
            _count(_reason(exc))
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def put_decision(self, key: str, decision: Mapping[str, Any]) -> None:
        """Write a decision atomically (tmp file + rename), authenticated with the root's key."""
        doc = {"key": key, "decision": _check_decision(_json_roundtrip(dict(decision)))}
        doc["mac"] = _mac(self._key, "decision", doc)
        _write_file(self._decision_path(key), json.dumps(doc, indent=1, sort_keys=True).encode(),
                    private=True, tmp_dir=self.root / "tmp")


def _checked(key: str) -> str:
    if not _KEY_RE.fullmatch(key):
        raise CacheError(f"invalid cache key {key!r}")
    return key


def _load_key(path: Path) -> bytes:
    """The root's HMAC key, created atomically (link of a complete tmp file) on first use."""
    try:
        data = _read_file(path, private=True, secret=True)
    except FileNotFoundError:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with os.fdopen(_open_nofollow(tmp, _CREATE, 0o600), "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(os.urandom(KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process made one first: theirs is used
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        data = _read_file(path, private=True, secret=True)
    if len(data) != KEY_BYTES:
        raise _Rejected(f"{path} holds {len(data)} bytes, not a {KEY_BYTES}-byte key", "corrupt")
    return data
