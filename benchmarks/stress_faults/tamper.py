"""Cache tampering, one kind at a time, on the cache directory of a stopped server.

Each kind is what an attacker with write access to some of the cache could do; the cache must
discard what it cannot trust (with a WARNING) and the server must rebuild and serve correctly:

``artifact_rehash``      a compiled artifact file is replaced and its sha256 in MANIFEST.json is
                         rewritten to match (only the manifest's HMAC can tell)
``decision_empty``       every boost decision file holds ``{}``
``decision_list``        every boost decision file holds ``[1, 2]``
``symlink_entry``        an artifact entry is moved aside and a symlink to it put in its place
``group_writable_root``  the cache root is made group-writable (mode 0770)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

KINDS = ("artifact_rehash", "decision_empty", "decision_list", "symlink_entry",
         "group_writable_root")


def artifact_entries(root: Path) -> list[Path]:
    """Entry directories (``artifacts/<k[:2]>/<key>/`` holding MANIFEST.json), sorted."""
    return sorted(p.parent for p in root.glob("artifacts/*/*/MANIFEST.json"))


def _largest_file(entry: Path) -> Path:
    files = [p for p in entry.rglob("*") if p.is_file() and not p.is_symlink()
             and p.name != "MANIFEST.json"]
    if not files:
        raise FileNotFoundError(f"{entry} holds no artifact file")
    return max(files, key=lambda p: p.stat().st_size)


def artifact_rehash(root: Path) -> str:
    entry = artifact_entries(root)[0]
    victim = _largest_file(entry)
    data = bytearray(victim.read_bytes())
    for i in range(0, len(data), max(1, len(data) // 64)):  # flip bytes all through the file
        data[i] ^= 0x5A
    victim.write_bytes(bytes(data))
    manifest = entry / "MANIFEST.json"
    doc = json.loads(manifest.read_text())
    rel = victim.relative_to(entry).as_posix()
    doc["files"][rel] = hashlib.sha256(bytes(data)).hexdigest()
    manifest.write_text(json.dumps(doc))
    return f"{rel} in {entry.name[:12]} replaced, its manifest hash rewritten"


def _decisions(root: Path, text: str) -> str:
    files = sorted((root / "decisions").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{root}/decisions holds no decision")
    for f in files:
        f.write_text(text)
    return f"{len(files)} decision file(s) set to {text}"


def decision_empty(root: Path) -> str:
    return _decisions(root, "{}")


def decision_list(root: Path) -> str:
    return _decisions(root, "[1, 2]")


def symlink_entry(root: Path) -> str:
    entry = artifact_entries(root)[0]
    aside = root.parent / f"{root.name}-aside" / entry.name
    aside.parent.mkdir(parents=True, exist_ok=True)
    if aside.exists():
        shutil.rmtree(aside)
    shutil.move(str(entry), aside)
    os.symlink(aside, entry, target_is_directory=True)
    return f"entry {entry.name[:12]} is a symlink to a copy outside the cache"


def group_writable_root(root: Path) -> str:
    os.chmod(root, 0o770)
    return "cache root mode 0770"


TAMPERS: dict[str, Callable[[Path], str]] = {
    "artifact_rehash": artifact_rehash, "decision_empty": decision_empty,
    "decision_list": decision_list, "symlink_entry": symlink_entry,
    "group_writable_root": group_writable_root}


def tamper(kind: str, root: Path) -> str:
    """Apply ``kind`` to the cache at ``root``; return what was done, in words."""
    return TAMPERS[kind](Path(root))


def restore(kind: str, root: Path) -> None:
    """Undo what the server does not undo by itself (the root's mode)."""
    if kind == "group_writable_root":
        os.chmod(root, 0o700)
