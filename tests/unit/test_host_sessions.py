"""Sessions read from a sysfs tree shaped as the kernel's iSCSI transport
class lays it out (tests/functional/test_host_sessions.py: the real one)."""
from __future__ import annotations

import os

import pytest

from iscsiattach.host.sessions import iscsi_sessions


def _session(sysfs, sid, host, target, address, port="3260", tpgt="1", proc="iscsi_tcp"):
    dev = sysfs / "devices" / "platform" / f"host{host}" / f"session{sid}"
    sess = dev / "iscsi_session" / f"session{sid}"
    sess.mkdir(parents=True)
    (sess / "targetname").write_text(target + "\n")
    (sess / "tpgt").write_text(tpgt + "\n")
    conn = dev / f"connection{sid}:0" / "iscsi_connection" / f"connection{sid}:0"
    conn.mkdir(parents=True)
    (conn / "persistent_address").write_text(address + "\n")
    (conn / "persistent_port").write_text(port + "\n")
    shost = sysfs / "class" / "scsi_host" / f"host{host}"
    shost.mkdir(parents=True, exist_ok=True)
    (shost / "proc_name").write_text(proc + "\n")
    for cls, name, to in (("iscsi_session", f"session{sid}", sess),
                          ("iscsi_connection", f"connection{sid}:0", conn)):
        (sysfs / "class" / cls).mkdir(parents=True, exist_ok=True)
        os.symlink(to, sysfs / "class" / cls / name)


def test_sessions_as_iscsiadm_lists_them(tmp_path):
    _session(tmp_path, 3, 5, "iqn.2010-10.org.x:vol-a", "127.0.0.1")
    _session(tmp_path, 12, 6, "iqn.2010-10.org.x:vol-b", "::1", port="3261", tpgt="2")
    assert iscsi_sessions(str(tmp_path)) == [
        ("tcp:", "12", "[::1]:3261", "2", "iqn.2010-10.org.x:vol-b"),
        ("tcp:", "3", "127.0.0.1:3260", "1", "iqn.2010-10.org.x:vol-a")]


def test_no_session_is_an_empty_list(tmp_path):
    (tmp_path / "class" / "iscsi_session").mkdir(parents=True)
    assert iscsi_sessions(str(tmp_path)) == []


@pytest.mark.parametrize("spoil", ["no class", "unknown transport", "no connection",
                                   "target not set yet"])
def test_iscsiadm_decides_what_sysfs_cannot_tell(tmp_path, spoil):
    if spoil != "no class":
        _session(tmp_path, 1, 2, "iqn.2010-10.org.x:vol-a", "10.0.0.1",
                 proc="bnx2i" if spoil == "unknown transport" else "iscsi_tcp")
    if spoil == "no connection":
        os.unlink(tmp_path / "class" / "iscsi_connection" / "connection1:0")
    if spoil == "target not set yet":
        (tmp_path / "class" / "iscsi_session" / "session1" / "targetname").write_text("(null)\n")
    assert iscsi_sessions(str(tmp_path)) is None
