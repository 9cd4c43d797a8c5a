"""Threads that follow the load: a worker that is the only busy one on the host uses every core.

Several server workers on one host (TorchServe starts one per core) each get ``cores // workers``
threads so that, under load, they do not fight over the cores. When only one request is in
flight, that split leaves all but one share idle: a single request on two cores ran 0.87x as
fast as stock TorchServe, whose one busy worker takes both. So each worker also loads its
compiled model a second time with every core ("wide"), and every call asks a small board, shared
by the workers of this user on this host, whether another worker is busy: alone, it runs wide;
otherwise on its share ("narrow").

The board is a file of one byte per worker process (its compiled calls in flight) in
``/dev/shm`` (else the temporary directory), private to the user. A process claims its byte by
holding an advisory lock on it, so a dead worker's byte is found stale (its lock is free) and
cleared by the next process that joins the board. Reading it is a 256-byte copy; the choice is made
when a call starts, so a call that began alone keeps every core until it ends even if another
starts meanwhile (briefly oversubscribed; never wrong, only slower for that overlap).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BusyBoard", "board"]

logger = logging.getLogger(__name__)

SLOTS = 256


class BusyBoard:
    """This process's byte on the host's busy board, and a count of the others.

    Args:
        path: the board file; created (mode 0600) when missing.

    Raises:
        OSError: when the file cannot be opened, or every slot is held by a live process.
    """

    def __init__(self, path: Path):
        import fcntl

        self._fcntl = fcntl
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o600)
        try:
            if os.fstat(self._fd).st_uid != os.getuid():
                raise OSError(f"{path} belongs to another user")
            if os.fstat(self._fd).st_size < SLOTS:
                os.ftruncate(self._fd, SLOTS)
            self._map = mmap.mmap(self._fd, SLOTS)
            self.slot = self._claim()
        except BaseException:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()
        self._mine = 0

    def _claim(self) -> int:
        """Lock the first free slot (clearing it: its last owner died) and return its index."""
        fcntl = self._fcntl
        for i in range(SLOTS):
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, i)
            except OSError:
                continue
            self._map[i] = 0
            self._sweep(i)
            return i
        raise OSError(f"all {SLOTS} slots of {self.path} are held")

    def _sweep(self, mine: int) -> None:
        """Clear the bytes of processes that died busy (their slot's lock is free)."""
        fcntl = self._fcntl
        for j in range(SLOTS):
            if j == mine or not self._map[j]:
                continue
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, j)
            except OSError:
                continue  # a live process holds it
            self._map[j] = 0
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, j)

    def others_busy(self) -> int:
        """How many other processes on the board have a call in flight now."""
        taken = SLOTS - self._map[:SLOTS].count(0)
        return taken - (1 if self._map[self.slot] else 0)

    @contextlib.contextmanager
    def busy(self) -> Iterator[bool]:
        """Mark this process busy for the block; yield True when no other process is."""
        with self._lock:
            self._mine += 1
            self._map[self.slot] = min(self._mine, 255)
        try:
            yield self.others_busy() == 0
        finally:
            with self._lock:
                self._mine -= 1
                self._map[self.slot] = min(self._mine, 255)

    def close(self) -> None:
        """Clear this process's byte and release its slot."""
        with contextlib.suppress(OSError, ValueError):
            self._map[self.slot] = 0
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def board_path() -> Path:
    """Where this user's board lives: ``/dev/shm`` when it is there, else the temp directory."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return where / f"yellowstone-busy-{os.getuid()}"


_board: BusyBoard | None = None
_board_error = ""
_board_lock = threading.Lock()


def board() -> BusyBoard | None:
    """This process's board (opened once), or None where it cannot be (logged once)."""
    global _board, _board_error
    with _board_lock:
        if _board is None and not _board_error:
            try:
                _board = BusyBoard(board_path())
            except (OSError, ImportError) as exc:
                _board_error = str(exc) or type(exc).__name__
                logger.warning("threads will not follow the load (no busy board: %s); each "
                               "worker keeps its share of the cores", _board_error)
        return _board


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's locks: it claims a slot of its own."""
    global _board, _board_error, _board_lock
    _board, _board_error, _board_lock = None, "", threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
