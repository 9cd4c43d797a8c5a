"""The cache as an attack surface: permissions, ownership, symlinks, tampering, bad decisions."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from yellowstone import cache as cache_mod
from yellowstone import metrics
from yellowstone.cache import MANIFEST, ArtifactCache, make_key, verify_manifest, write_manifest
from yellowstone.errors import CacheError

KEY = make_key(model="m", backend="fake")
NOBODY = 65534


def _build(d: Path) -> str:
    payload = os.urandom(64)
    (d / "weights.bin").write_bytes(payload)
    (d / "sub").mkdir()
    (d / "sub" / "graph.json").write_text(json.dumps({"n": 3}))
    return payload.hex()


def _load(d: Path) -> str:
    return (d / "weights.bin").read_bytes().hex()


def _fill(cache: ArtifactCache, key: str = KEY) -> Path:
    _, path, hit = cache.get_or_build(key, _load, _build, {"backend": "fake"})
    assert not hit and cache.lookup(key) == path
    return path


def _discards(reason: str | None = None) -> float:
    labels = {} if reason is None else {"reason": reason}
    return metrics.get(metrics.CACHE_DISCARDS, **labels)


def _warned(caplog, text: str) -> bool:
    return any(r.levelno == logging.WARNING and text in r.getMessage() for r in caplog.records)


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")


# -- permissions ------------------------------------------------------------------------------
def test_entries_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        cache = ArtifactCache(tmp_path / "c")
        _fill(cache)
        cache.put_decision(KEY, {"backend": "fake", "buckets": [1, 4], "report": {}})
        with cache.lock(KEY):
            pass
    finally:
        os.umask(old)
    seen = {"key": 0, "lock": 0, "decision": 0, "entry file": 0}
    for top, _, files in os.walk(tmp_path / "c"):
        assert stat.S_IMODE(os.lstat(top).st_mode) == 0o700, top
        for name in files:
            path = Path(top, name)
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
            kind = ("key" if name == "key" else "lock" if name.endswith(".lock") else
                    "decision" if path.parent.name == "decisions" else "entry file")
            seen[kind] += 1
    assert seen == {"key": 1, "lock": 1, "decision": 1, "entry file": 3}  # 2 files + manifest
    assert len((tmp_path / "c" / "key").read_bytes()) == 32
    assert not list((tmp_path / "c" / "tmp").iterdir())


# -- untrusted roots --------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["foreign_owner", "world_writable", "group_writable"])
def test_untrusted_root_is_refused_for_a_private_cache(tmp_path, caplog, how):
    root = tmp_path / "shared"
    root.mkdir()
    if how == "foreign_owner":
        _needs_root()
        os.chown(root, NOBODY, NOBODY)
        os.chmod(root, 0o755)
    else:
        os.chmod(root, 0o777 if how == "world_writable" else 0o770)
    before = _discards("untrusted_root")
    with caplog.at_level(logging.WARNING, logger="yellowstone.cache"):
        cache = ArtifactCache(root)
    refusals = [r for r in caplog.records if "refusing cache directory" in r.getMessage()]
    assert len(refusals) == 1 and str(root) in refusals[0].getMessage()
    assert _discards("untrusted_root") == before + 1
    assert cache.root != root and not list(root.iterdir())  # nothing written into it
    st = os.stat(cache.root)
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
    path = _fill(cache)
    assert path.is_relative_to(cache.root)
    assert ArtifactCache(root).root == cache.root  # one private cache per refused root


def test_foreign_owned_entry_is_a_miss_and_discarded(tmp_path, caplog):
    _needs_root()
    cache = ArtifactCache(tmp_path / "c")
    path = _fill(cache)
    os.chown(path / "weights.bin", NOBODY, NOBODY)
    before = _discards("foreign")
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert _warned(caplog, "is owned by uid 65534") and _discards("foreign") == before + 1
    assert not path.exists()


def test_group_writable_entry_is_a_miss(tmp_path, caplog):
    cache = ArtifactCache(tmp_path / "c")
    path = _fill(cache)
    os.chmod(path / "sub", 0o770)
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert _warned(caplog, "writable by group or others") and not path.exists()


# -- symlinks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["entry", "weights.bin", "sub", MANIFEST])
def test_symlink_in_the_cache_is_a_miss(tmp_path, caplog, target):
    cache = ArtifactCache(tmp_path / "c")
    path = _fill(cache)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(path, elsewhere)  # identical bytes: following the link would verify
    link = path if target == "entry" else path / target
    src = elsewhere if target == "entry" else elsewhere / target
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink()
    link.symlink_to(src)
    before = _discards("symlink")
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert _warned(caplog, "is a symlink") and _discards("symlink") == before + 1
    assert not os.path.lexists(path)  # discarded ...
    verify_manifest(elsewhere, KEY, mac_key=(tmp_path / "c" / "key").read_bytes())  # ... not its target
    _, _, hit = cache.get_or_build(KEY, _load, _build, {})
    assert not hit


def test_symlinked_decision_is_a_miss(tmp_path, caplog):
    cache = ArtifactCache(tmp_path / "c")
    cache.put_decision(KEY, {"backend": "fake", "buckets": None, "report": {}})
    path = tmp_path / "c" / "decisions" / f"{KEY}.json"
    moved = tmp_path / "decision.json"
    shutil.move(path, moved)
    path.symlink_to(moved)
    with caplog.at_level(logging.WARNING):
        assert cache.get_decision(KEY) is None
    assert _warned(caplog, "is a symlink")
    assert not os.path.lexists(path) and moved.exists()


# -- tampering: a native library swapped in with a rewritten manifest -------------------------
def _shared_object(tmp_path: Path, name: str, body: str) -> Path:
    src, out = tmp_path / f"{name}.c", tmp_path / f"{name}.so"
    src.write_text("#include <stdio.h>\n#include <stdlib.h>\n"
                   "__attribute__((constructor)) static void f(void) {" + body + "}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a test .so")
@pytest.mark.parametrize("mac", ["kept", "dropped", "forged_with_another_key"])
def test_replaced_native_library_never_loads(tmp_path, caplog, monkeypatch, mac):
    benign = _shared_object(tmp_path, "benign", "")
    evil = _shared_object(tmp_path, "evil", 'const char *p = getenv("YS_MARK"); if (p) {'
                          ' FILE *f = fopen(p, "w"); if (f) { fputs("ran", f); fclose(f); } }')
    control = tmp_path / "control-mark"  # the constructor does run when the library is loaded
    subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])",
                    str(evil)], check=True, env={**os.environ, "YS_MARK": str(control)})
    assert control.read_text() == "ran"

    mark = tmp_path / "mark"
    monkeypatch.setenv("YS_MARK", str(mark))
    cache = ArtifactCache(tmp_path / "c")

    def build(d: Path) -> str:
        shutil.copy(benign, d / "model.so")
        return "built"

    def load(d: Path) -> ctypes.CDLL:
        return ctypes.CDLL(str(d / "model.so"))

    _, path, hit = cache.get_or_build(KEY, load, build, {"backend": "tvm"})
    assert not hit
    shutil.copy(evil, path / "model.so")  # the attacker swaps the library ...
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"]["model.so"] = hashlib.sha256(evil.read_bytes()).hexdigest()  # ... and hash
    if mac == "dropped":
        del manifest["mac"]
    elif mac == "forged_with_another_key":
        manifest.pop("mac")
        manifest["mac"] = cache_mod._mac(os.urandom(32), "manifest", manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    before = _discards("tampered")
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert _warned(caplog, "authentication failed") and _discards("tampered") == before + 1
    assert not mark.exists()
    result, _, hit = cache.get_or_build(KEY, load, build, {"backend": "tvm"})
    assert (result, hit) == ("built", False) and not mark.exists()
    lib, _, hit = cache.get_or_build(KEY, load, build, {"backend": "tvm"})
    assert hit and isinstance(lib, ctypes.CDLL) and not mark.exists()


def test_unkeyed_manifest_is_accepted_outside_the_cache_only(tmp_path, caplog):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    _build(shipped)
    write_manifest(shipped, KEY, {"backend": "fake"})
    assert "mac" not in verify_manifest(shipped, KEY)  # a portable artifact directory
    (shipped / "weights.bin").write_bytes(b"changed")
    with pytest.raises(CacheError, match="weights.bin hash mismatch"):
        verify_manifest(shipped, KEY)
    write_manifest(shipped, KEY, {"backend": "fake"})
    cache = ArtifactCache(tmp_path / "c")
    path = _fill(cache)
    shutil.rmtree(path)
    shutil.copytree(shipped, path)
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert _warned(caplog, "authentication failed")


# -- decisions --------------------------------------------------------------------------------
def _signed(cache: ArtifactCache, key: str, decision: object) -> bytes:
    """A decision file with a valid mac: only its content can be wrong."""
    doc = {"key": key, "decision": decision}
    doc["mac"] = cache_mod._mac(cache._key, "decision", doc)
    return json.dumps(doc).encode()


BAD_DECISIONS = {
    "empty_object": b"{}",
    "list": b"[1,2]",
    "not_json": b"not json",
    "not_utf8": b"\xff\xfe{",
    "signed_empty_object": {},
    "signed_list": [1, 2],
    "signed_bad_buckets": {"backend": "tvm", "buckets": ["1", None], "report": {}},
    "signed_bool_bucket": {"backend": "tvm", "buckets": [True], "report": {}},
    "signed_backend_not_str": {"backend": 3, "buckets": None, "report": {}},
    "signed_report_not_dict": {"backend": "tvm", "buckets": [1], "report": [1]},
}


@pytest.mark.parametrize("name", list(BAD_DECISIONS))
def test_malformed_decision_is_discarded_and_counted(tmp_path, caplog, name):
    cache = ArtifactCache(tmp_path / "c")
    content = BAD_DECISIONS[name]
    data = content if isinstance(content, bytes) else _signed(cache, KEY, content)
    path = tmp_path / "c" / "decisions" / f"{KEY}.json"
    path.write_bytes(data)
    before = _discards()
    schema_before = _discards("schema")
    with caplog.at_level(logging.WARNING):
        assert cache.get_decision(KEY) is None
    assert _warned(caplog, "unreadable decision") and _discards() == before + 1
    if name.startswith("signed_"):
        assert _discards("schema") == schema_before + 1
    assert not path.exists()
    assert cache.get_decision(KEY) is None  # and stays a plain miss


def test_decisions_are_authenticated_and_bound_to_their_key(tmp_path, caplog):
    cache = ArtifactCache(tmp_path / "c")
    good = {"backend": "tvm", "buckets": [1, 8], "report": {"chosen": "tvm"}}
    cache.put_decision(KEY, good)
    assert cache.get_decision(KEY) == good
    path = tmp_path / "c" / "decisions" / f"{KEY}.json"
    doc = json.loads(path.read_text())
    doc["decision"]["backend"] = "evil"
    path.write_text(json.dumps(doc))
    before = _discards("tampered")
    with caplog.at_level(logging.WARNING):
        assert cache.get_decision(KEY) is None
    assert _discards("tampered") == before + 1
    other = make_key(model="other")
    cache.put_decision(other, good)
    shutil.copy(tmp_path / "c" / "decisions" / f"{other}.json", path)  # replayed under KEY
    assert cache.get_decision(KEY) is None
    with pytest.raises(CacheError, match="buckets"):
        cache.put_decision(KEY, {"backend": "tvm", "buckets": "all", "report": {}})
