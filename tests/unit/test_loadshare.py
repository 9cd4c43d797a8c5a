"""The busy board: one byte per process, counts of the others, stale bytes of dead processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from yellowstone.loadshare import BusyBoard

pytest.importorskip("fcntl")

# A second process on the board: joins, reports its slot, then obeys one command per line.
_PEER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from yellowstone.loadshare import BusyBoard
    board = BusyBoard(Path(sys.argv[1]))
    print(board.slot, flush=True)
    held = None
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "busy":
            held = board.busy(); held.__enter__()
        elif cmd == "idle":
            held.__exit__(None, None, None)
        elif cmd == "others":
            print(board.others_busy(), flush=True); continue
        elif cmd == "die":
            os._exit(0)  # no clean-up: a worker killed mid-call
        print("ok", flush=True)
""")


class Peer:
    """Another worker process on the board at ``path``."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", _PEER, str(path)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.slot = int(self.proc.stdout.readline())

    def say(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def die(self) -> None:
        self.proc.stdin.write("die\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def peers():
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


@pytest.fixture
def board(tmp_path):
    """This process on a fresh board (one per process: it holds the process's slot lock)."""
    made = BusyBoard(tmp_path / "board")
    yield made
    made.close()


def test_each_process_sees_the_others_busy(board, peers):
    assert board.path.stat().st_mode & 0o077 == 0  # private to the user
    with board.busy() as alone:
        assert alone and board.others_busy() == 0
    peers.append(Peer(board.path))
    peer = peers[0]
    assert peer.slot != board.slot
    assert peer.say("busy") == "ok"
    assert board.others_busy() == 1
    with board.busy() as alone:
        assert not alone
        assert peer.say("others") == "1"  # the peer sees this process busy too
    assert peer.say("others") == "0"
    assert peer.say("idle") == "ok"
    with board.busy() as alone:
        assert alone


def test_nested_calls_in_one_process_count_once_for_the_others(board, peers):
    peers.append(Peer(board.path))
    with board.busy(), board.busy() as alone:
        assert alone  # its own calls do not count against it
        assert peers[0].say("others") == "1"
    assert peers[0].say("others") == "0"


def test_a_worker_that_died_busy_is_cleared_when_the_next_one_joins(board, peers):
    first, second = Peer(board.path), Peer(board.path)
    peers.extend([first, second])
    assert first.say("busy") == "ok" and second.say("busy") == "ok"
    assert board.others_busy() == 2
    assert first.say("idle") == "ok"
    first.close()  # gone while idle: its slot is free and clean
    second.die()  # gone while busy: its byte still says busy
    assert board.others_busy() == 1
    joined = Peer(board.path)
    peers.append(joined)
    assert joined.slot == first.slot != second.slot  # the dead byte was not its own...
    assert board.others_busy() == 0  # ...but joining cleared it


def test_another_users_board_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "board"
    path.write_bytes(b"\0" * 256)
    monkeypatch.setattr("os.getuid", lambda: 12345)
    with pytest.raises(OSError, match="another user"):
        BusyBoard(path)
