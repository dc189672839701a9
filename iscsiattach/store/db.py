"""The store: the source of truth; LIO is rebuilt from it.

One SQLite file, 0600 in a 0700 directory (it holds CHAP secrets), WAL with
fully synchronous commits so an acknowledged change survives a power cut.
Status changes are compare-and-swap (``UPDATE ... WHERE status IN (...)``),
so two writers can never both win a transition that only one may make.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from iscsiattach.exception import NotFound
from iscsiattach.secret import Secret
from iscsiattach.store.schema import attachments, volumes

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


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


def _volume(row) -> Volume:
    return Volume(**{f.name: row._mapping[f.name] for f in fields(Volume)})


def _attachment(row) -> Attachment:
    m = dict(row._mapping)
    m["connector"] = json.loads(m["connector"]) if m["connector"] else None
    m["chap_secret"] = Secret(m["chap_secret"]) if m["chap_secret"] else None
    return Attachment(**{f.name: m[f.name] for f in fields(Attachment)})


def _attachment_values(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "connector" in out and out["connector"] is not None:
        out["connector"] = json.dumps(out["connector"], sort_keys=True)
    if isinstance(out.get("chap_secret"), Secret):
        out["chap_secret"] = out["chap_secret"].reveal()
    return out


class Store:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        _private_file(self.path)
        # hide_parameters: a database error must not quote a CHAP secret.
        self.engine = sa.create_engine(f"sqlite:///{self.path}", hide_parameters=True,
                                       connect_args={"timeout": 30})
        sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def upgrade(self) -> None:
        """Bring the schema to the newest revision, keeping the data.

        alembic is imported only when a migration is due: on a slow machine
        importing it costs more than the rest of the daemon's start, and on
        almost every start the schema is already at the head revision (one
        query tells).
        """
        head = head_revision()
        if head is not None and self.revision() == head:
            return
        from alembic import command
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.OperationalError:
                return None

    # -- volumes --------------------------------------------------------------
    def add_volume(self, **values: Any) -> Volume:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(volumes.insert().values(created_at=now, updated_at=now, **values))
        return self.volume(values["id"])

    def volume(self, volume_id: str) -> Volume:
        with self.engine.connect() as conn:
            row = conn.execute(volumes.select().where(volumes.c.id == volume_id)).first()
        if row is None:
            raise NotFound(f"volume {volume_id} not found")
        return _volume(row)

    def volumes(self) -> list[Volume]:
        with self.engine.connect() as conn:
            rows = conn.execute(volumes.select().order_by(volumes.c.created_at, volumes.c.id))
            return [_volume(r) for r in rows]

    def cas_volume(self, volume_id: str, from_status: Iterable[str] | None,
                   **values: Any) -> bool:
        """Update if the status is one of ``from_status`` (None: any); True if it did."""
        stmt = volumes.update().where(volumes.c.id == volume_id)
        if from_status is not None:
            stmt = stmt.where(volumes.c.status.in_(list(from_status)))
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(updated_at=utcnow(), **values)).rowcount == 1

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
        with self.engine.begin() as conn:
            conn.execute(attachments.delete().where(attachments.c.volume_id == volume_id))
            conn.execute(volumes.delete().where(volumes.c.id == volume_id))

    # -- attachments ----------------------------------------------------------
    def add_attachment(self, **values: Any) -> Attachment:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(attachments.insert().values(
                created_at=now, updated_at=now, **_attachment_values(values)))
        return self.attachment(values["id"])

    def attachment(self, attachment_id: str) -> Attachment:
        with self.engine.connect() as conn:
            row = conn.execute(attachments.select().where(
                attachments.c.id == attachment_id)).first()
        if row is None:
            raise NotFound(f"attachment {attachment_id} not found")
        return _attachment(row)

    def attachments(self, volume_id: str | None = None,
                    include_detached: bool = False) -> list[Attachment]:
        stmt = attachments.select().order_by(attachments.c.created_at, attachments.c.id)
        if volume_id is not None:
            stmt = stmt.where(attachments.c.volume_id == volume_id)
        if not include_detached:
            stmt = stmt.where(attachments.c.status != "detached")
        with self.engine.connect() as conn:
            return [_attachment(r) for r in conn.execute(stmt)]

    def cas_attachment(self, attachment_id: str, from_status: Iterable[str],
                       **values: Any) -> bool:
        stmt = attachments.update().where(attachments.c.id == attachment_id,
                                          attachments.c.status.in_(list(from_status)))
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(updated_at=utcnow(),
                                            **_attachment_values(values))).rowcount == 1


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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
