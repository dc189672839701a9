"""iscsiattach.host.brick's speed-ups over os-brick as is: the connector
without os-brick's all-protocol probe, and the wait for udev's by-id link
instead of os-brick's fixed 1 s sleep."""
from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from iscsiattach.host import brick, initiator

WWID = "36001405d6a8c5f0c2f14e8f9a1b2c3d4"


class FakeUdev:
    """sysfs and /dev/disk/by-id as os-brick's LinuxSCSI.get_sysfs_wwn sees
    them: the disk's WWID is in sysfs at once; the scsi-<wwid> link appears
    only when "udev" (a timer) gets to it, and the look returns the WWID only
    once that link exists."""

    def __init__(self, by_id, delay: float | None) -> None:
        self.by_id, self.looks = by_id, 0
        self.sysfs = {"sdq": WWID}
        if delay is not None:
            self.timer = threading.Timer(delay, self.make_link)
            self.timer.start()

    def make_link(self) -> None:
        self.by_id.mkdir(exist_ok=True)
        (self.by_id / f"scsi-{WWID}").symlink_to("../../sdq")

    def look(self, device_names, mpath=None) -> str:
        self.looks += 1
        wwid = next((self.sysfs[d] for d in device_names if d in self.sysfs), "")
        return wwid if wwid and (self.by_id / f"scsi-{wwid}").is_symlink() else ""


@pytest.fixture
def udevd(tmp_path, monkeypatch):
    control = tmp_path / "udev-control"
    control.touch()
    monkeypatch.setattr(brick, "UDEV_CONTROL", str(control))
    return control


def test_the_first_look_waits_for_the_udev_link(tmp_path, udevd):
    udev = FakeUdev(tmp_path / "by-id", delay=0.3)
    assert udev.look(["sdq"]) == ""             # what os-brick's first look sees
    t0 = time.monotonic()
    assert brick.wait_for_udev(udev.look)(["sdq"]) == WWID     # os-brick alone: a miss
    assert time.monotonic() - t0 >= 0.3 and udev.looks > 2


def test_the_wait_is_bounded_and_happens_once(tmp_path, udevd):
    udev = FakeUdev(tmp_path / "by-id", delay=None)     # the link never comes
    look = brick.wait_for_udev(udev.look, timeout=0.2)
    t0 = time.monotonic()
    assert look(["sdq"]) == ""
    assert time.monotonic() - t0 >= 0.2
    looks = udev.looks
    assert look(["sdq"]) == ""                  # os-brick's own retries: no second wait
    assert udev.looks == looks + 1


@pytest.mark.parametrize("why", ["multipath", "no udevd"])
def test_no_wait_where_no_link_is_coming(tmp_path, udevd, why):
    udev = FakeUdev(tmp_path / "by-id", delay=None)
    if why == "no udevd":
        udevd.unlink()
    look = brick.wait_for_udev(udev.look, timeout=5.0)
    assert look(["sdq"], "dm-0" if why == "multipath" else None) == ""
    assert udev.looks == 1


def test_our_connector_finds_the_wwn_without_os_bricks_sleep(tmp_path, udevd, monkeypatch):
    """os-brick's own _connect_single_volume, with the login stubbed: the
    device is found, udev makes its link 0.3 s later, and the WWN comes back
    without os-brick's time.sleep(1)."""
    from os_brick.initiator import linuxscsi
    udev = FakeUdev(tmp_path / "by-id", delay=0.3)
    monkeypatch.setattr(linuxscsi.LinuxSCSI, "get_sysfs_wwn",
                        lambda self, names, mpath=None: udev.look(names, mpath))
    slept = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: slept.append(s) or real_sleep(s))
    conn = brick._iscsi(False)
    monkeypatch.setattr(conn, "_connect_vol",
                        lambda rescans, props, data: data["found_devices"].append("sdq"))
    props = {"target_iqn": "iqn.2010-10.org.x:v", "target_portal": "10.0.0.1:3260",
             "target_lun": 0}
    got = conn._connect_single_volume(props)
    assert got == {"type": "block", "scsi_wwn": WWID, "path": "/dev/sdq"}
    assert 1 not in slept and slept        # polled at our step, never os-brick's 1 s


def test_our_connector_finds_a_new_disk_without_os_bricks_sleep(monkeypatch):
    """os-brick's own _connect_vol after a login with manual scan: the scan
    is written, the kernel adds the disk 0.2 s later, and it is found then,
    not after os-brick's time.sleep(1)."""
    from os_brick.initiator import linuxscsi
    appears = time.monotonic() + 0.2
    monkeypatch.setattr(linuxscsi.LinuxSCSI, "get_hctl", lambda self, session, lun: (7, 0, 0, 0))
    monkeypatch.setattr(linuxscsi.LinuxSCSI, "scan_iscsi", lambda self, *hctl: None)
    monkeypatch.setattr(linuxscsi.LinuxSCSI, "device_name_by_hctl",
                        lambda self, session, hctl: "sdq" if time.monotonic() >= appears
                        else None)
    slept = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: slept.append(s) or real_sleep(s))
    conn = brick._iscsi(False)
    monkeypatch.setattr(conn, "_connect_to_iscsi_portal", lambda props: ("1", True))
    data = {"stop_connecting": False, "num_logins": 0, "failed_logins": 0,
            "stopped_threads": 0, "found_devices": [], "just_added_devices": []}
    conn._connect_vol(5, {"target_portal": "10.0.0.1:3260", "target_lun": 0}, data)
    assert data["found_devices"] == ["sdq"]
    assert 1 not in slept and slept        # polled at our step, never os-brick's 1 s


def test_the_connector_runs_no_program(tmp_path, monkeypatch):
    name_file = tmp_path / "initiatorname.iscsi"
    name_file.write_text("## generated\nInitiatorName=iqn.2004-10.com.example:host-1\n")
    monkeypatch.setattr(initiator, "INITIATOR_FILE", str(name_file))

    def no_program(*args, **kwargs):
        raise AssertionError(f"ran a program: {args[0]}")
    monkeypatch.setattr(subprocess, "Popen", no_program)
    props = brick.connector_properties("10.0.0.9", True)
    assert props == {"initiator": "iqn.2004-10.com.example:host-1", "ip": "10.0.0.9",
                     "host": socket.gethostname(), "multipath": True,
                     "enforce_multipath": False, "platform": props["platform"],
                     "os_type": "linux"}
    assert props["platform"] and brick.connector_properties(None, False)["ip"] == "127.0.0.1"
    name_file.write_text("# no name yet\n")
    with pytest.raises(brick.BrickError, match="no iSCSI initiator name"):
        brick.connector_properties(None, False)


def test_plain_settings_go_into_the_record(tmp_path, monkeypatch):
    """os-brick's scan and CHAP method/user updates cost an iscsiadm run each;
    the record takes them directly (the scan mode only where iscsiadm listed
    it: older open-iscsi lacks it)."""
    from iscsiattach.host import node_record
    iqn, portal = "iqn.2010-10.org.x:v", "10.0.0.1:3260"
    record = tmp_path / iqn / "10.0.0.1,3260"
    record.parent.mkdir()
    record.write_text("node.name = x\nnode.session.auth.authmethod = None\n")
    monkeypatch.setattr(node_record, "NODE_DIRS", (str(tmp_path),))
    conn, ran = brick._iscsi(False), []
    monkeypatch.setattr(conn, "_run_iscsiadm", lambda props, cmd, **kw: ran.append(cmd) or
                        ("", ""))
    props = {"target_iqn": iqn, "target_portal": portal}
    conn._iscsiadm_update(props, "node.session.scan", "manual")      # not listed: iscsiadm
    # Asked for manual, set to auto: one LUN per target, found again at boot.
    assert ran == [("--op", "update", "-n", "node.session.scan", "-v", "auto")]
    record.write_text(record.read_text() + "node.session.scan = auto\n")
    assert conn._iscsiadm_update(props, "node.session.scan", "manual") == ("", "")
    conn._iscsiadm_update(props, "node.session.auth.authmethod", "CHAP")
    conn._iscsiadm_update(props, "node.session.auth.username", "user-1")
    assert record.read_text().splitlines() == [
        "node.name = x", "node.session.scan = auto", "node.session.auth.authmethod = CHAP",
        "node.session.auth.username = user-1"]
    assert len(ran) == 1


def test_sysfs_commands_are_written_not_piped_through_tee(tmp_path, monkeypatch):
    conn = brick._iscsi(False)
    assert conn._linuxscsi.echo_scsi_command is brick.echo_scsi_command

    def no_program(*args, **kwargs):
        raise AssertionError(f"ran a program: {args[0]}")
    monkeypatch.setattr(subprocess, "Popen", no_program)
    scan = tmp_path / "scan"
    scan.write_text("")
    conn._linuxscsi.echo_scsi_command(str(scan), "0 0 0")
    assert scan.read_text() == "0 0 0"


def test_node_startup_goes_into_the_record_after_login(tmp_path, monkeypatch):
    from iscsiattach.host import node_record
    iqn, portal = "iqn.2010-10.org.x:v", "10.0.0.1:3260"
    record = tmp_path / iqn / "10.0.0.1,3260"
    record.parent.mkdir()
    record.write_text("node.name = x\nnode.startup = manual\n")
    monkeypatch.setattr(node_record, "NODE_DIRS", (str(tmp_path),))
    conn = brick._iscsi(False)
    monkeypatch.setattr(subprocess, "Popen", _no_program)
    conn._iscsiadm_update({"target_iqn": iqn, "target_portal": portal}, "node.startup",
                          "automatic")
    assert record.read_text().splitlines() == ["node.name = x", "node.startup = automatic"]


def _no_program(*args, **kwargs):
    raise AssertionError(f"ran a program: {args[0]}")


def test_whether_a_record_exists_is_read_from_its_file(tmp_path, monkeypatch):
    """os-brick runs a bare `iscsiadm -m node -T -p` to learn whether the
    record exists (its output unused); --op new follows when it does not."""
    from iscsiattach.host import node_record
    iqn, portal = "iqn.2010-10.org.x:v", "10.0.0.1:3260"
    monkeypatch.setattr(node_record, "NODE_DIRS", (str(tmp_path),))
    conn, ran = brick._iscsi(False), []
    monkeypatch.setattr(conn, "_execute", lambda *cmd, **kw: ran.append(cmd) or
                        ("", "iscsiadm: No records found\n"))
    props = {"target_iqn": iqn, "target_portal": portal}
    assert conn._run_iscsiadm(props, ())[1]         # no record: iscsiadm says so
    assert ran == [("iscsiadm", "-m", "node", "-T", iqn, "-p", portal)]
    (tmp_path / iqn).mkdir()
    (tmp_path / iqn / "10.0.0.1,3260").write_text("node.name = x\n")
    assert conn._run_iscsiadm(props, ()) == ("", "")
    assert len(ran) == 1
    conn._run_iscsiadm(props, ("--login",))          # everything else still runs
    assert ran[-1][-1] == "--login"


@pytest.mark.parametrize("multipath", [False, True])
def test_multipathd_is_asked_only_for_multipath(monkeypatch, multipath):
    conn, asked = brick._iscsi(multipath), []
    monkeypatch.setattr(conn, "supports_multipath", lambda: asked.append(1) or True)
    conn.check_multipath({"target_iqn": "iqn.2010-10.org.x:v"})
    assert asked == ([1] if multipath else [])


def test_sessions_come_from_sysfs_and_from_iscsiadm_when_it_cannot_tell(monkeypatch):
    conn = brick._iscsi(False)
    listed = [("tcp:", "1", "10.0.0.1:3260", "1", "iqn.2010-10.org.x:v")]
    monkeypatch.setattr(brick, "iscsi_sessions", lambda: listed)
    monkeypatch.setattr(conn, "_run_iscsi_session", _no_program)
    assert conn._get_iscsi_sessions_full() == listed
    monkeypatch.setattr(brick, "iscsi_sessions", lambda: None)
    monkeypatch.setattr(conn, "_run_iscsi_session", lambda: (
        "tcp: [7] 10.0.0.2:3260,1 iqn.2010-10.org.x:w (non-flash)\n", ""))
    assert conn._get_iscsi_sessions_full() == [
        ("tcp:", "7", "10.0.0.2:3260", "1", "iqn.2010-10.org.x:w")]
