"""Volumes over the file backend, and the store underneath."""
from __future__ import annotations

import os
import sqlite3
import stat
import uuid

import pytest

from iscsiattach.exception import Conflict, InvalidInput, NotFound
from iscsiattach.store import Store
from tests.unit.test_attachments import connector, instance


def test_create_list_show_delete(services, tmp_path):
    vol = services.volume_service.create(2, name="db", multiattach=True)
    assert (vol.status, vol.size_gib, vol.multiattach, vol.backend) == \
        ("available", 2, True, "file")
    assert os.path.getsize(vol.location) == 2 << 30
    assert [v.id for v in services.volume_service.list_volumes()] == [vol.id]
    assert services.volume_service.show(vol.id) == vol
    services.volume_service.delete(vol.id)
    assert not os.path.exists(vol.location)
    with pytest.raises(NotFound):
        services.volume_service.show(vol.id)


@pytest.mark.parametrize("size", [0, -1, 101, 1.5, "1", True, None])
def test_bad_sizes_refused_and_nothing_made(services, size):
    with pytest.raises(InvalidInput):
        services.volume_service.create(size)
    assert services.volume_service.list_volumes() == []


def test_bad_names_and_flags_refused(services):
    with pytest.raises(InvalidInput):
        services.volume_service.create(1, name="x" * 256)
    with pytest.raises(InvalidInput):
        services.volume_service.create(1, name="bad\nname")
    with pytest.raises(InvalidInput):
        services.volume_service.create(1, multiattach="yes")
    assert services.volume_service.list_volumes() == []


def test_delete_refused_while_attached(services):
    vol = services.volume_service.create(1)
    att, _ = services.attachment_service.create(vol.id, instance(), connector())
    with pytest.raises(Conflict, match="attachments"):
        services.volume_service.delete(vol.id)
    services.attachment_service.delete(att.id)
    services.volume_service.delete(vol.id)


def test_extend_grows_and_refreshes_a_connected_lun(services, fake_target):
    vol = services.volume_service.create(1)
    services.attachment_service.create(vol.id, instance(), connector())
    assert fake_target.inspect(vol.id).lun0_backing.size == 1 << 30
    vol = services.volume_service.extend(vol.id, 3)
    assert vol.size_gib == 3 and vol.status == "attaching"
    assert fake_target.inspect(vol.id).lun0_backing.size == 3 << 30
    with pytest.raises(InvalidInput):
        services.volume_service.extend(vol.id, 2)
    again = services.volume_service.extend(vol.id, 3)          # a retry: already done
    assert again.size_gib == 3 and again.status == "attaching"


def test_store_migrates_an_empty_database(tmp_path):
    path = tmp_path / "new" / "db.sqlite"
    store = Store(str(path))
    assert store.revision() is None
    store.upgrade()
    assert store.revision() == "0001"
    store.upgrade()                                   # again: nothing to do
    with store._connection() as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    assert {"volumes", "attachments", "alembic_version"} <= set(tables)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert journal == "wal" and synchronous == 2        # FULL


def test_state_files_are_private(services, tmp_path):
    vol = services.volume_service.create(1)
    services.attachment_service.create(vol.id, instance(), connector())
    for root, dirs, files in os.walk(tmp_path / "state"):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) & 0o077 == 0, d
        for f in files:
            if root.endswith("/locks"):
                continue    # empty lock files; their 0700 folder keeps others out
            mode = stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode)
            assert mode & 0o077 == 0, f"{f} is {oct(mode)}"


def test_data_survives_a_new_store_object(services, tmp_path):
    vol = services.volume_service.create(1)
    att, info = services.attachment_service.create(vol.id, instance(), connector())
    again = Store(str(services.store.path))
    assert again.volume(vol.id) == services.store.volume(vol.id)
    assert again.attachment(att.id).chap_secret == info["auth_password"]
    assert again.attachment(att.id).connector == connector()
    assert uuid.UUID(again.attachment(att.id).id)


def test_database_errors_never_quote_a_secret(services):
    from iscsiattach.secret import Secret
    with pytest.raises(sqlite3.IntegrityError) as err:      # no such volume: FK refuses
        services.store.add_attachment(id=str(uuid.uuid4()), volume_id=str(uuid.uuid4()),
                                      instance_uuid=None, status="attaching", attach_mode="rw",
                                      chap_userid="u", chap_secret=Secret("canary-db-secret"))
    assert "canary-db-secret" not in str(err.value)


def test_rows_read_the_same_as_sqlalchemy_writes_and_reads_them(tmp_path):
    """Databases written before the store dropped SQLAlchemy (and alembic's
    migrations, which still use it) agree with the store on every value."""
    import datetime as dt

    import sqlalchemy as sa

    from iscsiattach.secret import Secret
    from iscsiattach.store.schema import attachments, volumes
    store = Store(str(tmp_path / "db.sqlite"))
    store.upgrade()
    when = dt.datetime(2026, 11, 26, 4, 5, 6, 789)
    engine = sa.create_engine(f"sqlite:///{store.path}")
    vid, aid = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(volumes.insert().values(
            id=vid, size_gib=2, backend="file", location="/v", multiattach=True,
            status="in-use", created_at=when, updated_at=when))
        conn.execute(attachments.insert().values(
            id=aid, volume_id=vid, status="attached", connector='{"initiator": "iqn.x"}',
            chap_secret="s3cret", attached_at=when.replace(microsecond=0),
            created_at=when, updated_at=when))
    vol, att = store.volume(vid), store.attachment(aid)
    assert (vol.name, vol.multiattach, vol.created_at) == ("", True, when)
    assert (att.attach_mode, att.connector, att.chap_secret.reveal(), att.attached_at,
            att.detached_at) == ("rw", {"initiator": "iqn.x"}, "s3cret",
                                 when.replace(microsecond=0), None)
    bid = str(uuid.uuid4())
    store.add_volume(id=bid, size_gib=1, backend="file", location=None, status="available")
    store.add_attachment(id=str(uuid.uuid4()), volume_id=bid, status="attaching",
                         chap_secret=Secret("other"), connector={"b": 1, "a": 2})
    assert store.cas_volume(bid, ["available"], status="attaching", multiattach=True)
    with engine.connect() as conn:
        row = conn.execute(volumes.select().where(volumes.c.id == bid)).one()
        att_row = conn.execute(attachments.select().where(attachments.c.volume_id == bid)).one()
    assert (row.multiattach, row.status, row.name) == (True, "attaching", "")
    assert row.updated_at == store.volume(bid).updated_at and row.updated_at >= row.created_at
    assert (att_row.chap_secret, att_row.connector, att_row.attach_mode) == \
        ("other", '{"a": 2, "b": 1}', "rw")
    engine.dispose()
