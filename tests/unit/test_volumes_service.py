"""Volumes over the file backend, and the store underneath."""
from __future__ import annotations

import os
import stat
import uuid

import pytest
import sqlalchemy as sa

from iscsiattach.exception import Conflict, InvalidInput, NotFound
from iscsiattach.store import Store
from tests.unit.test_attachments import connector, instance


def test_create_list_show_delete(services, tmp_path):
    vol = services.volumes.create(2, name="db", multiattach=True)
    assert (vol.status, vol.size_gib, vol.multiattach, vol.backend) == \
        ("available", 2, True, "file")
    assert os.path.getsize(vol.location) == 2 << 30
    assert [v.id for v in services.volumes.list()] == [vol.id]
    assert services.volumes.show(vol.id) == vol
    services.volumes.delete(vol.id)
    assert not os.path.exists(vol.location)
    with pytest.raises(NotFound):
        services.volumes.show(vol.id)


@pytest.mark.parametrize("size", [0, -1, 101, 1.5, "1", True, None])
def test_bad_sizes_refused_and_nothing_made(services, size):
    with pytest.raises(InvalidInput):
        services.volumes.create(size)
    assert services.volumes.list() == []


def test_bad_names_and_flags_refused(services):
    with pytest.raises(InvalidInput):
        services.volumes.create(1, name="x" * 256)
    with pytest.raises(InvalidInput):
        services.volumes.create(1, name="bad\nname")
    with pytest.raises(InvalidInput):
        services.volumes.create(1, multiattach="yes")
    assert services.volumes.list() == []


def test_delete_refused_while_attached(services):
    vol = services.volumes.create(1)
    att, _ = services.attachments.create(vol.id, instance(), connector())
    with pytest.raises(Conflict, match="attachments"):
        services.volumes.delete(vol.id)
    services.attachments.delete(att.id)
    services.volumes.delete(vol.id)


def test_extend_grows_and_refreshes_a_connected_lun(services, fake_target):
    vol = services.volumes.create(1)
    services.attachments.create(vol.id, instance(), connector())
    assert fake_target.inspect(vol.id).lun0_backing.size == 1 << 30
    vol = services.volumes.extend(vol.id, 3)
    assert vol.size_gib == 3 and vol.status == "attaching"
    assert fake_target.inspect(vol.id).lun0_backing.size == 3 << 30
    with pytest.raises(InvalidInput):
        services.volumes.extend(vol.id, 2)
    again = services.volumes.extend(vol.id, 3)          # a retry: already done
    assert again.size_gib == 3 and again.status == "attaching"


def test_store_migrates_an_empty_database(tmp_path):
    path = tmp_path / "new" / "db.sqlite"
    store = Store(str(path))
    assert store.revision() is None
    store.upgrade()
    assert store.revision() == "0001"
    store.upgrade()                                   # again: nothing to do
    tables = sa.inspect(store.engine).get_table_names()
    assert {"volumes", "attachments", "alembic_version"} <= set(tables)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2    # FULL


def test_state_files_are_private(services, tmp_path):
    vol = services.volumes.create(1)
    services.attachments.create(vol.id, instance(), connector())
    for root, dirs, files in os.walk(tmp_path / "state"):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) & 0o077 == 0, d
        for f in files:
            if root.endswith("/locks"):
                continue    # empty lock files; their 0700 folder keeps others out
            mode = stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode)
            assert mode & 0o077 == 0, f"{f} is {oct(mode)}"


def test_data_survives_a_new_store_object(services, tmp_path):
    vol = services.volumes.create(1)
    att, info = services.attachments.create(vol.id, instance(), connector())
    again = Store(str(services.store.path))
    assert again.volume(vol.id) == services.store.volume(vol.id)
    assert again.attachment(att.id).chap_secret == info["auth_password"]
    assert again.attachment(att.id).connector == connector()
    assert uuid.UUID(again.attachment(att.id).id)


def test_database_errors_never_quote_a_secret(services):
    from iscsiattach.secret import Secret
    with pytest.raises(sa.exc.IntegrityError) as err:      # no such volume: FK refuses
        services.store.add_attachment(id=str(uuid.uuid4()), volume_id=str(uuid.uuid4()),
                                      instance_uuid=None, status="attaching", attach_mode="rw",
                                      chap_userid="u", chap_secret=Secret("canary-db-secret"))
    assert "canary-db-secret" not in str(err.value)
