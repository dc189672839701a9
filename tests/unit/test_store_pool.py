"""The store's connection pool is bounded and shrinks: a burst of requests
(300 concurrent /healthz) must neither open a connection per request nor
leave them all open afterwards (each holds file descriptors)."""
from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from iscsiattach.store import Store
from iscsiattach.store.db import MAX_IDLE, MAX_OPEN


def _fds_on(path: Path | str) -> int:
    """Descriptors of this process open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            pass                        # closed meanwhile
    return count


def _wal(store: Store) -> str:
    return f"{store.path}-wal"          # one descriptor per open connection


@pytest.fixture()
def store(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    store.upgrade()
    yield store
    store.close()


def test_defaults():
    assert (MAX_OPEN, MAX_IDLE) == (8, 2)


def test_300_threads_share_at_most_max_open_connections(store, monkeypatch):
    peak = {"open": 0, "fds": 0}
    peak_lock = threading.Lock()
    connect = store._connect

    def counted_connect():
        conn = connect()
        with peak_lock:
            peak["open"] = max(peak["open"], store.open_connections)
            peak["fds"] = max(peak["fds"], _fds_on(store.path))
        return conn
    monkeypatch.setattr(store, "_connect", counted_connect)
    start = threading.Barrier(300)
    errors: list[BaseException] = []

    def request(i: int) -> None:
        try:
            start.wait()
            if i % 10 == 0:             # writers among the readers
                store.add_volume(id=str(uuid.uuid4()), size_gib=1, backend="file",
                                 location=None, status="available")
            store.volumes()
        except BaseException as exc:    # noqa: BLE001 - reported below
            errors.append(exc)
    for burst in range(2):
        threads = [threading.Thread(target=request, args=(i,)) for i in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.volumes()) == 30 * (burst + 1)
        assert 1 <= peak["open"] <= MAX_OPEN
        assert peak["fds"] <= MAX_OPEN
        # Afterwards only the idle connections stay open. (SQLite keeps the
        # database file's descriptors of closed connections while others of
        # the process hold POSIX locks on it, and reuses them for the next
        # open: those stay at the peak, never above max_open.)
        assert store.open_connections <= MAX_IDLE
        assert _fds_on(_wal(store)) <= MAX_IDLE
        assert _fds_on(store.path) <= MAX_OPEN
        start.reset()
    store.close()
    assert store.open_connections == 0
    assert _fds_on(store.path) == 0 and _fds_on(_wal(store)) == 0


def test_a_caller_beyond_max_open_waits_then_gets_busy(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"), max_open=1, max_idle=1, busy_timeout=0.2)
    store.upgrade()
    with store._connection():
        with pytest.raises(sqlite3.OperationalError,
                           match=r"database is busy: no free connection within 0.2 s"):
            store.volumes()
    assert store.volumes() == []        # the slot came back
    # A waiter gets the connection as soon as it is returned.
    store.busy_timeout = 5
    held = threading.Event()
    release = threading.Event()

    def hold():
        with store._connection():
            held.set()
            release.wait()
    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    threading.Timer(0.1, release.set).start()
    assert store.volumes() == []
    t.join()
    assert store.open_connections == 1


def test_a_connection_left_in_a_transaction_is_closed_not_pooled(store):
    with store._connection() as conn:
        conn.execute("BEGIN")
    assert store.open_connections == 0
    assert store.volumes() == []


@pytest.mark.parametrize("max_open, max_idle", [(0, 0), (2, 3), (2, -1)])
def test_pool_limits_are_checked(tmp_path, max_open, max_idle):
    with pytest.raises(ValueError, match="store pool"):
        Store(str(tmp_path / "db.sqlite"), max_open=max_open, max_idle=max_idle)
