"""The store: the source of truth; LIO is rebuilt from it.

One SQLite file, 0600 in a 0700 directory (it holds CHAP secrets), WAL with
fully synchronous commits so an acknowledged change survives a power cut.
Status changes are compare-and-swap (``UPDATE ... WHERE status IN (...)``),
so two writers can never both win a transition that only one may make.

Plain sqlite3, a handful of statements: the daemon starts (and a node
restores after a reboot) without importing an ORM; on a slow machine that
import cost more than the rest of the start. The schema and its migrations
are alembic's (``schema.py``, ``migrations/``), imported only when one is due.
Values are stored as SQLAlchemy stores them on SQLite (datetimes as
``YYYY-MM-DD HH:MM:SS.ffffff`` text, booleans as 0/1), so existing databases
read back unchanged.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from iscsiattach.exception import NotFound
from iscsiattach.secret import Secret

MIGRATIONS = Path(__file__).with_name("migrations")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
# The pool: eight connections are plenty for SQLite, where writers take
# turns anyway (WAL lets readers run beside them); two stay open between
# bursts so a lone request does not pay for a connect.
MAX_OPEN = 8
MAX_IDLE = 2
BUSY_TIMEOUT = 30.0     # seconds a caller waits for a lock, or for a free connection


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    size_gib: int
    backend: str
    location: str | None
    multiattach: bool
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Attachment:
    id: str
    volume_id: str
    instance_uuid: str | None
    status: str
    attach_mode: str
    connector: dict | None
    initiator: str | None
    host: str | None
    chap_userid: str | None
    chap_secret: Secret | None
    attached_at: dt.datetime | None
    detached_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class _Table:
    name: str
    row: type
    defaults: dict[str, Any]            # what an insert leaves out (schema.py's defaults)

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        # Cached: asked for on every row read, and dataclasses.fields() is slow.
        return tuple(f.name for f in fields(self.row))

    @functools.cached_property
    def converters(self) -> tuple[Callable[[Any], Any] | None, ...]:
        """Per column, what turns a stored value back into ours (None: as
        stored). Found once per table: a pass over every row of a large
        store pays a lookup per column otherwise."""
        return tuple(_CONVERTERS.get(c) for c in self.columns)


VOLUMES = _Table("volumes", Volume, {"name": "", "multiattach": False})
ATTACHMENTS = _Table("attachments", Attachment, {"attach_mode": "rw"})
_DATETIMES = {"created_at", "updated_at", "attached_at", "detached_at"}


def _to_db(column: str, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime(DATETIME_FORMAT)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Secret):
        return value.reveal()
    if column == "connector" and value is not None:
        return json.dumps(value, sort_keys=True)
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_DATETIMES, dt.datetime.fromisoformat),
    "multiattach": bool,
    "connector": lambda value: json.loads(value) if value else None,
    "chap_secret": lambda value: Secret(value) if value else None,
}


def _row(table: _Table, row: tuple) -> Any:
    return table.row(*[v if conv is None or v is None else conv(v)
                       for conv, v in zip(table.converters, row, strict=True)])


def _assignments(table: _Table, values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    unknown = set(values) - set(table.columns)
    if unknown:
        raise TypeError(f"no such column in {table.name}: {sorted(unknown)}")
    return list(values), [_to_db(c, v) for c, v in values.items()]


class Store:
    """The store over one SQLite file, with a small bounded connection pool.

    At most ``max_open`` connections exist at once (each holds two or three
    file descriptors); a caller beyond that waits for one to come back, for
    ``busy_timeout`` seconds as SQLite waits for a lock, then gets the same
    ``sqlite3.OperationalError`` a busy database gives. At most ``max_idle``
    are kept open between uses: a burst of requests must not leave hundreds
    of descriptors held for the rest of the daemon's life. (SQLite keeps the
    database-file descriptor of a closed connection while other connections
    of the process hold locks on the file, POSIX locks being per process,
    and reuses it for the next open: that count stays at the peak, at most
    ``max_open``.)
    """

    def __init__(self, path: str, max_open: int = MAX_OPEN, max_idle: int = MAX_IDLE,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        if max_open < 1 or not 0 <= max_idle <= max_open:
            raise ValueError(f"store pool: need 1 <= max_open and 0 <= max_idle <= "
                             f"max_open, not {max_open} and {max_idle}")
        self.path = Path(path)
        _private_file(self.path)
        self.max_open, self.max_idle, self.busy_timeout = max_open, max_idle, busy_timeout
        self._slots = threading.BoundedSemaphore(max_open)
        self._lock = threading.Lock()           # guards _idle and _open
        self._idle: list[sqlite3.Connection] = []
        self._open = 0
        self._watch: sqlite3.Connection | None = None     # only asks data_version
        self._watch_lock = threading.Lock()

    # -- connections --------------------------------------------------------
    @property
    def open_connections(self) -> int:
        """Connections open now, in use or idle (never more than max_open)."""
        return self._open

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are the explicit BEGINs below.
        # Errors never quote parameters, so a CHAP secret stays out of them.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this store's, used by one thread at a time."""
        if not self._slots.acquire(timeout=self.busy_timeout):
            raise sqlite3.OperationalError(
                f"database is busy: no free connection within {self.busy_timeout:g} s "
                f"({self.max_open} in use)")
        try:
            conn = self._checkout()
        except BaseException:
            self._slots.release()
            raise
        try:
            yield conn
        finally:
            self._checkin(conn)
            self._slots.release()

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._open += 1                     # counted before it exists: the cap holds
        try:
            return self._connect()
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _checkin(self, conn: sqlite3.Connection) -> None:
        # One still inside a transaction (a failed ROLLBACK) is not reused.
        with self._lock:
            if len(self._idle) < self.max_idle and not conn.in_transaction:
                self._idle.append(conn)
                return
            self._open -= 1
        conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE: the write lock up front, so a busy database is waited
        # for (timeout) instead of failing halfway through.
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:     # the pool must get it back clean
                    conn.execute("ROLLBACK")
                raise

    def _select(self, table: _Table, where: str = "", args: tuple = (),
                order: str = "") -> list[Any]:
        sql = f"SELECT {', '.join(table.columns)} FROM {table.name}" \
            + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else "")
        with self._connection() as conn:
            return [_row(table, r) for r in conn.execute(sql, args).fetchall()]

    def _insert(self, table: _Table, values: dict[str, Any]) -> None:
        now = utcnow()
        cols, args = _assignments(table, {**table.defaults, "created_at": now,
                                          "updated_at": now, **values})
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO {table.name} ({', '.join(cols)}) "
                         f"VALUES ({', '.join('?' * len(cols))})", args)

    def _cas(self, table: _Table, row_id: str, from_status: Iterable[str] | None,
             values: dict[str, Any]) -> bool:
        cols, args = _assignments(table, {"updated_at": utcnow(), **values})
        sql = f"UPDATE {table.name} SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?"
        args.append(row_id)
        if from_status is not None:
            wanted = list(from_status)
            sql += f" AND status IN ({', '.join('?' * len(wanted))})"
            args += wanted
        with self._transaction() as conn:
            return conn.execute(sql, args).rowcount == 1

    def close(self) -> None:
        """Close the idle connections (a later call opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        with self._watch_lock:
            if self._watch is not None:
                idle.append(self._watch)
                self._watch = None
        for conn in idle:
            conn.close()

    def generation(self) -> int:
        """A number that changes whenever a change is committed to the store,
        by this process or another: SQLite's data_version, asked on a
        connection of its own that never writes (one beyond max_open), so
        every commit is another connection's. Read before a snapshot, it
        tells whether the snapshot can still be used."""
        with self._watch_lock:
            if self._watch is None:
                self._watch = self._connect()
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    # -- schema ---------------------------------------------------------------
    def upgrade(self) -> None:
        """Bring the schema to the newest revision, keeping the data.

        alembic (and SQLAlchemy under it) is imported only when a migration
        is due: on a slow machine importing them costs more than the rest of
        the daemon's start, and on almost every start the schema is already
        at the head revision (one query tells).
        """
        head = head_revision()
        if head is not None and self.revision() == head:
            return
        import sqlalchemy as sa
        from alembic import command
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        # hide_parameters: a database error must not quote a CHAP secret.
        engine = sa.create_engine(f"sqlite:///{self.path}", hide_parameters=True,
                                  connect_args={"timeout": self.busy_timeout})
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            engine.dispose()

    def revision(self) -> str | None:
        with self._connection() as conn:
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:
                return None
        return row[0] if row else None

    # -- volumes --------------------------------------------------------------
    def add_volume(self, **values: Any) -> Volume:
        self._insert(VOLUMES, values)
        return self.volume(values["id"])

    def volume(self, volume_id: str) -> Volume:
        found = self._select(VOLUMES, "id = ?", (volume_id,))
        if not found:
            raise NotFound(f"volume {volume_id} not found")
        return found[0]

    def volumes(self) -> list[Volume]:
        return self._select(VOLUMES, order="created_at, id")

    def cas_volume(self, volume_id: str, from_status: Iterable[str] | None,
                   **values: Any) -> bool:
        """Update if the status is one of ``from_status`` (None: any); True if it did."""
        return self._cas(VOLUMES, volume_id, from_status, values)

    def settle_volume(self, volume_id: str, from_status: Iterable[str],
                      derive: Callable[[list[str]], str]) -> str | None:
        """Set a volume's status from its attachments' statuses (``derive``),
        only while it is in ``from_status``; the new status if it changed."""
        statuses = [a.status for a in self.attachments(volume_id, include_detached=True)]
        want = derive(statuses)
        if self.cas_volume(volume_id, [s for s in from_status if s != want], status=want):
            return want
        return None

    def remove_volume(self, volume_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM attachments WHERE volume_id = ?", (volume_id,))
            conn.execute("DELETE FROM volumes WHERE id = ?", (volume_id,))

    # -- attachments ----------------------------------------------------------
    def add_attachment(self, **values: Any) -> Attachment:
        self._insert(ATTACHMENTS, values)
        return self.attachment(values["id"])

    def attachment(self, attachment_id: str) -> Attachment:
        found = self._select(ATTACHMENTS, "id = ?", (attachment_id,))
        if not found:
            raise NotFound(f"attachment {attachment_id} not found")
        return found[0]

    def attachments(self, volume_id: str | None = None,
                    include_detached: bool = False) -> list[Attachment]:
        where, args = [], []
        if volume_id is not None:
            where.append("volume_id = ?")
            args.append(volume_id)
        if not include_detached:
            where.append("status != 'detached'")
        return self._select(ATTACHMENTS, " AND ".join(where), tuple(args),
                            order="created_at, id")

    def cas_attachment(self, attachment_id: str, from_status: Iterable[str],
                       **values: Any) -> bool:
        return self._cas(ATTACHMENTS, attachment_id, from_status, values)


_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(?:[\"']([^\"']+)[\"']|None)\s*$", re.M)


def head_revision() -> str | None:
    """The newest revision in migrations/versions, read from the scripts'
    ``revision``/``down_revision`` lines without importing alembic; None
    unless there is exactly one head (then alembic sorts it out)."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((m.group(1), m.group(2)) for m in _REVISION.finditer(script.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _private_file(path: Path) -> None:
    """Create the directory 0700 and the file 0600 before SQLite opens it
    (SQLite gives its -wal and -shm files the database file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
