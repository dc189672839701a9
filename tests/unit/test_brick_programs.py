"""Programs our connector no longer runs, each answered the way os-brick
expects: a missing node record (iscsiadm's exit 21), the node listing of a
disconnect, its discovery-database query, and `multipathd show status`
where no multipathd listens. Every program os-brick starts is recorded."""
from __future__ import annotations

import warnings

import pytest

from iscsiattach.host import brick, node_record

IQN, PORTAL = "iqn.2010-10.org.x:v", "10.0.0.1:3260"
PROPS = {"target_iqn": IQN, "target_portal": PORTAL, "target_lun": 0,
         "auth_method": "CHAP", "auth_username": "user-1", "auth_password": "s3cret-xx"}


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(node_record, "NODE_DIRS", (str(tmp_path),))
    return tmp_path


@pytest.fixture
def conn(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = brick._iscsi(False)
    made.ran = []
    return made


def _record(records, iqn=IQN):
    path = records / iqn / "10.0.0.1,3260"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("node.name = x\nnode.session.scan = manual\nnode.startup = manual\n")
    return path


def test_a_first_connect_makes_the_record_without_asking_for_it(conn, records, monkeypatch):
    from os_brick.initiator import utils as initiator_utils
    monkeypatch.setattr(initiator_utils, "ISCSI_SUPPORTS_MANUAL_SCAN",
                        initiator_utils.ISCSI_SUPPORTS_MANUAL_SCAN)
    answers = iter([[], [("tcp:", "1", PORTAL, "1", IQN)]])
    monkeypatch.setattr(brick, "iscsi_sessions", lambda: next(answers))

    def execute(*cmd, **kw):
        conn.ran.append(cmd)
        if "new" in cmd:
            _record(records)        # what iscsiadm --op new does
        return "", ""
    monkeypatch.setattr(conn, "_execute", execute)
    assert conn._connect_to_iscsi_portal_unsafe(dict(PROPS))[0] == "1"
    iscsiadm = [c for c in conn.ran if c and c[0] == "iscsiadm"]
    assert iscsiadm[0][-2:] == ("--op", "new"), f"a record lookup ran first: {iscsiadm}"
    assert not any(c[-2:] == ("-p", PORTAL) for c in iscsiadm), "a bare record lookup ran"


def test_without_exit_21_accepted_the_lookup_is_iscsiadms(conn, records, monkeypatch):
    monkeypatch.setattr(conn, "_execute", lambda *cmd, **kw: conn.ran.append(cmd) or ("", ""))
    conn._run_iscsiadm(dict(PROPS), ())
    assert len(conn.ran) == 1


def test_a_disconnect_lists_no_nodes_and_queries_no_discovery(conn, records, monkeypatch):
    monkeypatch.setattr(conn, "_execute", lambda *cmd, **kw: conn.ran.append(cmd) or ("", ""))
    monkeypatch.setattr(brick, "iscsi_sessions", lambda: [])
    props = brick.with_target_lists(PROPS)
    assert conn._get_connection_devices(props, None, True) == {}
    _record(records)
    got = conn._get_connection_devices(props, None, True)
    assert got == {(PORTAL, IQN): (set(), set())}, "a record without a session must be found"
    assert conn.ran == [], f"programs ran: {conn.ran}"


def test_target_lists_are_added_only_where_missing():
    got = brick.with_target_lists(PROPS)
    assert (got["target_portals"], got["target_iqns"], got["target_luns"]) == \
        ([PORTAL], [IQN], [0])
    multi = {**PROPS, "target_portals": ["a:3260", "b:3260"], "target_iqns": [IQN, IQN],
             "target_luns": [0, 0]}
    assert brick.with_target_lists(multi) == multi
    assert "target_portals" not in PROPS


def test_multipathd_is_asked_only_where_it_listens(tmp_path, monkeypatch):
    sockets = tmp_path / "unix"
    asked = []
    running = brick.multipath_running(lambda **kw: asked.append(kw) or True)
    monkeypatch.setattr(brick, "UNIX_SOCKETS", str(sockets))
    sockets.write_text("Num RefCount Protocol Flags Type St Inode Path\n"
                       "0000: 00000002 00000000 00010000 0001 01 1234 /run/udev/control\n")
    assert running(root_helper="") is False and asked == []
    sockets.write_text(sockets.read_text() + "0000: 00000002 00000000 00010000 0001 01 99 "
                       "@/org/kernel/linux/storage/multipathd\n")
    assert running(root_helper="") is True and asked == [{"root_helper": ""}]


def test_unreadable_socket_list_lets_os_brick_ask(tmp_path):
    assert brick.multipathd_listening(str(tmp_path / "missing")) is True


# -- the flush before a device is removed: an ioctl, not `blockdev` ------------
@pytest.fixture
def ioctls(monkeypatch):
    import fcntl
    calls: list[int] = []
    answers: list[BaseException | None] = []

    def ioctl(fd, request, arg=0):
        calls.append(request)
        answer = answers.pop(0) if answers else None
        if answer is not None:
            raise answer
        return 0
    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    return calls, answers


def test_a_flush_is_blockdevs_ioctl_in_this_process(tmp_path, ioctls):
    calls, _ = ioctls
    dev = tmp_path / "sdx"
    dev.write_bytes(b"")
    brick.flush_device_io(str(dev))
    assert calls == [brick.BLKFLSBUF]
    brick.flush_device_io(str(tmp_path / "gone"))      # no device: nothing, as os-brick
    assert calls == [brick.BLKFLSBUF]


def test_a_failed_flush_is_retried_then_raised(tmp_path, ioctls):
    import errno
    calls, answers = ioctls
    dev = tmp_path / "sdx"
    dev.write_bytes(b"")
    answers += [OSError(errno.EIO, "I/O error"), None]
    brick.flush_device_io(str(dev), interval=0)
    assert len(calls) == 2
    answers += [OSError(errno.EIO, "I/O error")] * 3
    with pytest.raises(OSError, match="I/O error"):
        brick.flush_device_io(str(dev), interval=0)
    assert len(calls) == 5


def test_a_stuck_flush_is_given_up_after_its_bound(tmp_path, monkeypatch):
    import fcntl
    import threading
    release = threading.Event()
    monkeypatch.setattr(fcntl, "ioctl", lambda *a: release.wait(30))
    dev = tmp_path / "sdx"
    dev.write_bytes(b"")
    try:
        with pytest.raises(TimeoutError, match="took over"):
            brick.flush_device_io(str(dev), timeout=0.2, attempts=1)
    finally:
        release.set()
