"""LioBackend's locks: one per volume, so operations on different volumes
run side by side, and one shared lock for the backstore slots; in-process
and across processes (external locks in lock_path)."""
from __future__ import annotations

import threading

import pytest

from iscsiattach.targets.lio import LioBackend


def _blocks(backend: LioBackend, held: str | None, wanted: str | None) -> bool:
    """Whether another thread waits for ``wanted`` while ``held`` is held."""
    got = threading.Event()

    def other() -> None:
        with backend._locked(wanted):
            got.set()
    with backend._locked(held):
        t = threading.Thread(target=other)
        t.start()
        blocked = not got.wait(0.5)
    t.join(5)
    assert got.is_set()
    return blocked


@pytest.fixture(params=["in-process", "external"])
def backend(request, tmp_path):
    return LioBackend(lock_path=str(tmp_path) if request.param == "external" else None)


def test_different_volumes_do_not_wait_for_each_other(backend):
    assert not _blocks(backend, "vol-a", "vol-b")
    assert not _blocks(backend, "vol-a", None)      # a claim goes on beside a volume's work


def test_one_volume_and_the_shared_lock_are_each_exclusive(backend):
    assert _blocks(backend, "vol-a", "vol-a")
    assert _blocks(backend, None, None)


def test_waits_are_reported(tmp_path):
    waited: list[float] = []
    backend = LioBackend(lock_path=str(tmp_path), lock_wait=waited.append)
    with backend._locked("vol-a"):
        pass
    assert len(waited) == 1 and waited[0] >= 0


def test_a_peek_does_not_wait_for_the_volume_lock(tmp_path, monkeypatch):
    """The steady reconcile pass peeks without the lock; inspect() waits."""
    from iscsiattach.targets.lio import configfs, inspect
    monkeypatch.setattr(configfs, "ROOT", str(tmp_path))       # "LIO is there"
    monkeypatch.setattr(LioBackend, "_load_fabric", lambda self: None)
    seen: list[str] = []
    monkeypatch.setattr(inspect, "export_state", lambda vid, iqn: seen.append(vid))
    backend = LioBackend(lock_path=str(tmp_path))
    vid = "0e4c5a7e-0000-4000-8000-000000000001"
    done = threading.Event()

    def inspect_it() -> None:
        backend.inspect(vid)
        done.set()
    with backend._locked(vid):
        backend.peek(vid)
        assert seen == [vid]
        t = threading.Thread(target=inspect_it)
        t.start()
        assert not done.wait(0.5)       # inspect() waits for the holder
    t.join(5)
    assert done.is_set() and seen == [vid, vid]
