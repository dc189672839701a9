"""Real logins against real LIO with the real initiator (iscsiadm, not our code)."""
from __future__ import annotations

import errno
import os
import subprocess
import uuid

import pytest

from iscsiattach.exception import InvalidInput
from iscsiattach.host.sessions import iscsi_sessions
from iscsiattach.model import Backing, BackingKind, ChapCredentials, ExportSpec, Grant, Portal
from iscsiattach.secret import Secret
from tests.functional.iscsi import (
    BAD_CREDENTIALS,
    NO_ACL,
    TARGET_NOT_PROVEN,
    Node,
    initiator_name,
    iscsiadm,
    sysfs_identity,
    wait_for,
    write_and_read_back,
)
from tests.support.scsi import is_write_protected, logical_block_size, read10, refused_write

V4 = Portal("127.0.0.1", 3260)
V6 = Portal("::1", 3260)
USER, SECRET = "host-user", "host-secret-0123456789"


@pytest.fixture
def me():
    return initiator_name()


def export(backend, backing, portal=V4):
    spec = ExportSpec(str(uuid.uuid4()), backing, (portal,))
    return spec, backend.export(spec)


def grant(me, read_only=False, user=USER, secret=SECRET):
    return Grant(me, ChapCredentials(user, Secret(secret)), read_only=read_only)


def test_chap_login_device_identity_and_checksum(backend, make_backing, me):
    spec, info = export(backend, make_backing(64 << 20))
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    res = node.login_retrying()
    assert res.returncode == 0, res.stderr
    dev = node.device()
    # The LUN says which volume it is: unit serial and NAA WWN from the volume id.
    assert sysfs_identity(dev) == (info.naa_wwn, info.unit_serial)
    assert wait_for(lambda: os.path.exists(node.by_path()), 15), "no by-path link"
    assert os.path.realpath(node.by_path()) == dev
    size = int(open(f"/sys/block/{os.path.basename(dev)}/size").read()) * 512
    assert size == 64 << 20
    assert write_and_read_back(dev, 4 << 20)
    assert write_and_read_back(dev, 1 << 20, offset=(64 << 20) - (1 << 20))
    node.delete()
    assert node.session_dirs() == []


def test_block_backing_on_a_loop_device(backend, make_backing, me):
    path = make_backing(32 << 20).path
    loop = subprocess.run(["losetup", "--find", "--show", path], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        spec, info = export(backend, Backing(BackingKind.BLOCK, loop))
        backend.authorize(spec.volume_id, grant(me))
        node = Node(info.target_iqn, V4).setup(USER, SECRET)
        assert node.login_retrying().returncode == 0
        dev = node.device()
        assert sysfs_identity(dev) == (info.naa_wwn, info.unit_serial)
        assert write_and_read_back(dev, 2 << 20)
        node.delete()
        backend.unexport(spec.volume_id)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_wrong_chap_secret_refused(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V4).setup(USER, "wrong-secret-0123456789")
    node.assert_refused(BAD_CREDENTIALS)
    node.delete()


def test_wrong_chap_user_refused(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V4).setup("someone-else", SECRET)
    node.assert_refused(BAD_CREDENTIALS)
    node.delete()


def test_initiator_without_acl_refused(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, Grant("iqn.2004-10.com.example:not-me",
                                            ChapCredentials(USER, Secret(SECRET))))
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    node.assert_refused(NO_ACL)
    node.delete()


def test_deauthorize_drops_session_and_refuses_login(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    assert node.login_retrying().returncode == 0
    node.device()
    assert node.session_state() == "LOGGED_IN"
    assert backend.deauthorize(spec.volume_id, me) is True
    assert wait_for(lambda: node.session_state() != "LOGGED_IN", 20), \
        "the session stayed logged in after its ACL was removed"
    node.logout()
    node.assert_refused(NO_ACL)
    node.delete()


def test_read_only_grant_refuses_writes(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, grant(me, read_only=True))
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    assert node.login_retrying().returncode == 0
    dev = node.device()
    ro_flag = f"/sys/block/{os.path.basename(dev)}/ro"
    # sd reads the write-protect bit while it probes the disk, which may
    # finish a moment after the device node appears.
    assert wait_for(lambda: open(ro_flag).read().strip() == "1", 10), "device is not read-only"
    with pytest.raises(OSError) as err:
        os.open(dev, os.O_WRONLY)              # the host's own flag, first
    assert err.value.errno == errno.EROFS
    # Then the target: a WRITE sent past the host's flag gets DATA PROTECT /
    # WRITE PROTECTED, and the block is unchanged.
    before = read10(dev, 0, 1, logical_block_size(dev)).data
    answer, after = refused_write(dev)
    assert is_write_protected(answer), f"not refused by the target: {answer}"
    assert after == before
    node.delete()


def test_mutual_chap_login(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    creds = ChapCredentials(USER, Secret(SECRET), "target-user",
                            Secret("target-secret-0123456789"))
    backend.authorize(spec.volume_id, Grant(me, creds))
    wrong = Node(info.target_iqn, V4).setup(USER, SECRET, ("target-user", "not-the-target-0123"))
    # The initiator refuses a target that cannot prove its secret.
    wrong.assert_refused(TARGET_NOT_PROVEN)
    wrong.delete()
    node = Node(info.target_iqn, V4).setup(USER, SECRET,
                                           ("target-user", "target-secret-0123456789"))
    assert node.login_retrying().returncode == 0
    node.device()
    node.delete()


def test_ipv6_portal(backend, make_backing, me):
    spec, info = export(backend, make_backing(), portal=V6)
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V6).setup(USER, SECRET)
    res = node.login_retrying()
    assert res.returncode == 0, res.stderr
    dev = node.device()
    assert sysfs_identity(dev)[1] == spec.volume_id
    assert write_and_read_back(dev, 1 << 20)
    node.delete()


def _iscsiadm_sessions() -> list[tuple[str, ...]]:
    """`iscsiadm -m session`, split as os-brick splits it."""
    out = iscsiadm("-m", "session", check=False).stdout
    return [(f[0], f[1][1:-1], *f[2].split(","), f[3])
            for f in (line.split() for line in out.splitlines() if line)]


def test_sessions_read_from_sysfs_are_what_iscsiadm_lists(backend, make_backing, me):
    nodes = []
    for portal in (V4, V6):
        spec, info = export(backend, make_backing(), portal=portal)
        backend.authorize(spec.volume_id, grant(me))
        nodes.append(Node(info.target_iqn, portal).setup(USER, SECRET))
        assert nodes[-1].login_retrying().returncode == 0
    ours = iscsi_sessions()
    assert ours is not None and len(ours) >= 2
    assert {s[4] for s in ours} >= {n.iqn for n in nodes}
    assert sorted(ours) == sorted(_iscsiadm_sessions())
    for node in nodes:
        node.delete()
    assert not {s[4] for s in iscsi_sessions() or []} & {n.iqn for n in nodes}


def test_repeated_operations_do_not_disturb_a_live_session(backend, make_backing, me):
    spec, info = export(backend, make_backing())
    g = grant(me)
    backend.authorize(spec.volume_id, g)
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    assert node.login_retrying().returncode == 0
    dev = node.device()
    sessions = node.session_dirs()
    backend.export(spec)
    backend.authorize(spec.volume_id, g)
    assert node.session_dirs() == sessions and node.session_state() == "LOGGED_IN"
    assert write_and_read_back(dev, 1 << 20)
    node.delete()


def test_unexport_with_live_session_leaves_nothing(backend, make_backing, me, tamper):
    spec, info = export(backend, make_backing())
    backend.authorize(spec.volume_id, grant(me))
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    assert node.login_retrying().returncode == 0
    node.device()
    assert backend.unexport(spec.volume_id) is True
    assert tamper.leftovers(spec.volume_id) == []
    node.delete()


def test_no_secret_in_logs_or_errors(backend, make_backing, me, tamper, caplog):
    canary = "canary-secret-7f3e9a1c"
    caplog.set_level("DEBUG")
    spec, info = export(backend, make_backing())
    g = grant(me, secret=canary)
    backend.authorize(spec.volume_id, g)
    tamper.set_chap_password(spec.volume_id, me, "tampered-canary-1234")
    drift = backend.drift(spec, [g])
    backend.authorize(spec.volume_id, g)          # repairs, logging at debug
    state = backend.inspect(spec.volume_id)
    backend.deauthorize(spec.volume_id, me)
    backend.unexport(spec.volume_id)
    seen = caplog.text + repr(drift) + str(drift) + repr(state)
    assert caplog.records, "expected the backend to log its operations"
    assert canary not in seen and "tampered-canary" not in seen


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs of its own: Linux 6.1's has no direct I/O (O_DIRECT: EINVAL)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_file_volume_on_tmpfs_is_served_through_the_page_cache(backend, me, tmpfs):
    """The file backend finds no direct I/O there and says so in the
    backing; LIO serves it with fileio through the page cache (what an
    asynchronous, direct-I/O export cannot: it is refused, as before)."""
    from iscsiattach.volumes.file import FileBackend
    files = FileBackend(str(tmpfs / "volumes"))
    vid = str(uuid.uuid4())
    made = files.create(vid, 1)
    assert made.backing.direct_io is False
    direct = ExportSpec(vid, Backing(BackingKind.FILE, made.location, made.backing.size),
                        (V4,))
    with pytest.raises(InvalidInput, match="without direct I/O"):
        backend.export(direct)
    assert not backend.exists(vid)
    spec = ExportSpec(vid, made.backing, (V4,))
    info = backend.export(spec)
    assert backend.inspect(vid).lun0_backing == made.backing
    backend.authorize(vid, grant(me))
    assert backend.drift(spec, [grant(me)]) == []
    node = Node(info.target_iqn, V4).setup(USER, SECRET)
    try:
        assert node.login_retrying().returncode == 0
        dev = node.device()
        assert write_and_read_back(dev, 4 << 20)
        assert write_and_read_back(dev, 1 << 20, offset=(1 << 30) - (1 << 20))
    finally:
        node.delete()
        backend.unexport(vid)
        files.delete(vid, made.location)


def test_the_targets_sessions_are_what_the_initiator_holds(backend, make_backing, me):
    """LIO's view (the ACL's info) against the initiator's (iscsiadm): one
    session per logged-in initiator, from the address the host used (IPv4
    and IPv6), gone with a logout and with the ACL."""
    nodes, specs = [], []
    for portal in (V4, V6):
        spec, info = export(backend, make_backing(), portal=portal)
        backend.authorize(spec.volume_id, grant(me))
        assert backend.sessions(spec.volume_id) == []       # an ACL, nobody logged in
        nodes.append(Node(info.target_iqn, portal).setup(USER, SECRET))
        assert nodes[-1].login_retrying().returncode == 0
        specs.append(spec)
    held = {s[4]: s[2] for s in _iscsiadm_sessions()}      # target -> portal
    for spec, node, addr in zip(specs, nodes, ("127.0.0.1", "::1"), strict=True):
        [session] = backend.sessions(spec.volume_id)
        assert (session.initiator, session.state, session.addresses) == (me, "LOGGED_IN", (addr,))
        assert node.iqn in held
    nodes[0].logout()
    assert backend.sessions(specs[0].volume_id) == []
    assert backend.deauthorize(specs[1].volume_id, me)    # the kernel ends the session
    assert backend.sessions(specs[1].volume_id) == []
    for node in nodes:
        node.delete()
