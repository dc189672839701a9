"""Statuses are StrEnums whose values are the strings the store has always
kept and the API has always shown (Cinder's): a database written before
they were enums reads the same, and clients see no change."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid

import pytest

from iscsiattach.attachments import state as st
from iscsiattach.attachments.state import AttachmentStatus, VolumeStatus
from iscsiattach.model import BackingKind
from iscsiattach.store import Store

VOLUME_STRINGS = ["creating", "available", "reserved", "attaching", "in-use", "detaching",
                  "extending", "error", "deleting"]
ATTACHMENT_STRINGS = ["reserved", "attaching", "attached", "detached", "error_attaching",
                      "error_detaching"]


def test_the_values_are_the_strings_of_before():
    assert [s.value for s in VolumeStatus] == VOLUME_STRINGS
    assert [s.value for s in AttachmentStatus] == ATTACHMENT_STRINGS
    assert [k.value for k in BackingKind] == ["fileio", "block"]


@pytest.mark.parametrize("status", [*VolumeStatus, *AttachmentStatus, *BackingKind])
def test_a_member_is_its_string_everywhere(status):
    text = status.value
    assert status == text and str(status) == text and f"{status}" == text
    assert hash(status) == hash(text) and text in {status}
    assert json.dumps({"status": status}) == json.dumps({"status": text})


def test_the_short_names_are_the_members():
    assert (st.IN_USE, st.A_ERROR_ATTACHING) == (VolumeStatus.IN_USE,
                                                 AttachmentStatus.ERROR_ATTACHING)
    assert set(st.LIVE) | {st.A_DETACHED} == set(AttachmentStatus)


def _volume(store: Store, status: VolumeStatus) -> str:
    vid, now = str(uuid.uuid4()), dt.datetime(2024, 1, 1)
    store.add_volume(id=vid, name=f"volume-{vid}", size_gib=1, backend="file", location=None,
                     multiattach=False, status=status, created_at=now, updated_at=now)
    return vid


def _attachment(store: Store, volume_id: str, status: AttachmentStatus) -> str:
    aid, now = str(uuid.uuid4()), dt.datetime(2024, 1, 1)
    store.add_attachment(id=aid, volume_id=volume_id, instance_uuid=None, status=status,
                         attach_mode="rw", connector=None, initiator=None, host=None,
                         chap_userid=None, chap_secret=None, attached_at=None,
                         detached_at=None, created_at=now, updated_at=now)
    return aid


def _raw(store: Store, table: str, row_id: str) -> tuple[str, str]:
    with sqlite3.connect(store.path) as conn:
        return conn.execute(f"SELECT status, typeof(status) FROM {table} WHERE id = ?",
                            (row_id,)).fetchone()


def test_the_store_keeps_the_plain_strings(tmp_path):
    store = Store(str(tmp_path / "db.sqlite"))
    store.upgrade()
    for status, text in zip(VolumeStatus, VOLUME_STRINGS, strict=True):
        vid = _volume(store, status)
        assert _raw(store, "volumes", vid) == (text, "text")
        assert store.volume(vid).status == text
    vid = _volume(store, VolumeStatus.RESERVED)
    for status, text in zip(AttachmentStatus, ATTACHMENT_STRINGS, strict=True):
        aid = _attachment(store, vid, status)
        assert _raw(store, "attachments", aid) == (text, "text")
        assert store.attachment(aid).status == text
    # A compare-and-swap matches rows written as plain strings.
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE volumes SET status = 'in-use' WHERE id = ?", (vid,))
    assert store.cas_volume(vid, [VolumeStatus.IN_USE], status=VolumeStatus.DETACHING)
    assert _raw(store, "volumes", vid) == ("detaching", "text")
