"""The host side for real: os-brick and open-iscsi against iscsiattachd on LIO.

HostSide runs in this process (os-brick is imported once; a CLI call in the
guest costs seconds of imports); test_daemon.py drives the same through the
`iscsiattach attach` / `detach` commands.
"""
from __future__ import annotations

import glob
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from iscsiattach.cli.client import Client
from iscsiattach.cli.host import ApiAdapter
from iscsiattach.host import brick
from iscsiattach.host.attach import HostSide, StepFailed
from iscsiattach.targets.lio.configfs import CONFIGFS
from tests.functional.conftest import PREFIX
from tests.functional.daemon import URL, Daemon, call
from tests.functional.iscsi import initiator_name
from tests.support.scsi import is_write_protected, refused_write

BLOCK = 1 << 20


@pytest.fixture
def daemon(tmp_path, scratch_fs, backend, fork_server):
    d = Daemon(tmp_path / "state", scratch_fs / "host-volumes", forkserver=fork_server)
    d.start(timeout=300)        # a loaded TCG guest can take minutes to import
    yield d
    d.stop()


@pytest.fixture
def side(daemon, tmp_path):
    brick.setup(str(tmp_path / "host" / "locks"))
    api = ApiAdapter(Client(URL, daemon.token, "3.54"))
    made = HostSide(api, brick, str(tmp_path / "host"))
    yield made
    # Whatever a failed test left attached: log out before the backend cleanup.
    for rec in made.find_records(None):
        made.detach(rec["attachment_id"], force=True)


def new_volume(daemon, multiattach: bool = False) -> str:
    status, body = call("POST", "/volumes", {"volume": {"size": 1, "multiattach": multiattach}},
                        daemon.token)
    assert status == 202, body
    return body["volume"]["id"]


def write_block(dev: str, data: bytes, offset: int = 0) -> None:
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        os.pwritev(fd, [_aligned(data)], offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_block(dev: str, offset: int = 0, size: int = BLOCK) -> bytes:
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = _aligned(bytes(size))
        os.preadv(fd, [buf], offset)
        return bytes(buf)
    finally:
        os.close(fd)


def _aligned(data: bytes) -> memoryview:
    import mmap
    buf = memoryview(mmap.mmap(-1, len(data)))      # page aligned, for O_DIRECT
    buf[:] = data
    return buf


def iqn_of(volume_id: str) -> str:
    return f"{PREFIX}volume-{volume_id}"


def sessions_to(target_iqn: str) -> list[str]:
    return [s for s in glob.glob("/sys/class/iscsi_session/session*")
            if Path(s, "targetname").read_text().strip() == target_iqn]


def acls_of(volume_id: str) -> list[str]:
    acls = CONFIGFS / "iscsi" / iqn_of(volume_id) / "tpgt_1" / "acls"
    return sorted(p.name for p in acls.iterdir()) if acls.is_dir() else []


def test_ro_attach_refuses_writes_at_the_host_and_at_the_target(daemon, side):
    vid = new_volume(daemon)
    rw = side.attach(vid)
    payload = os.urandom(BLOCK)
    write_block(rw.device, payload)
    side.detach(vid)

    ro = side.attach(vid, mode="ro")
    assert Path("/sys/block", Path(ro.device).name, "ro").read_text().strip() == "1"
    with pytest.raises(OSError):
        os.open(ro.device, os.O_WRONLY)            # the kernel's read-only flag
    # Past the host's flag, straight to the LUN: the target itself refuses
    # the write (DATA PROTECT) and the block still holds what was written.
    answer, block0 = refused_write(ro.device)
    assert is_write_protected(answer), answer
    assert payload.startswith(block0)
    assert read_block(ro.device) == payload
    side.detach(vid)


def test_two_volumes_at_once_get_distinct_confirmed_devices(daemon, side):
    vids = [new_volume(daemon), new_volume(daemon)]
    got = [side.attach(v) for v in vids]
    assert got[0].device != got[1].device
    assert [g.serial for g in got] == vids
    assert got[0].stable_path != got[1].stable_path
    payloads = [os.urandom(BLOCK), os.urandom(BLOCK)]
    for g, data in zip(got, payloads, strict=True):
        write_block(g.device, data)
    assert [read_block(g.device) for g in got] == payloads
    for v in vids:
        side.detach(v)
    assert all(not sessions_to(iqn_of(v)) for v in vids)


def test_multiattach_twice_on_one_host_detached_one_at_a_time(daemon, side):
    vid = new_volume(daemon, multiattach=True)
    first = side.attach(vid, instance=str(uuid.uuid4()))
    second = side.attach(vid, instance=str(uuid.uuid4()))
    assert first.attachment_id != second.attachment_id
    assert first.device == second.device                  # one session, one device
    assert acls_of(vid) == [initiator_name()]             # one ACL for both

    assert side.detach(first.attachment_id) == [first.attachment_id]
    payload = os.urandom(BLOCK)
    write_block(second.device, payload)                   # still attached
    assert read_block(second.device) == payload
    listed = call("GET", f"/attachments?volume_id={vid}", token=daemon.token)[1]
    assert [a["id"] for a in listed["attachments"]] == [second.attachment_id]
    assert acls_of(vid) == [initiator_name()]

    side.detach(second.attachment_id)
    assert not sessions_to(iqn_of(vid)) and acls_of(vid) == []


class WrongVolumeApi(ApiAdapter):
    """A storage side that answers an attach of one volume with another's
    target: what a stale or mixed-up LUN looks like from the host."""

    def __init__(self, client: Client, swap: dict[str, str]) -> None:
        super().__init__(client)
        self.swap = swap

    def attachment_create(self, volume_id, instance, connector, mode) -> dict:
        return super().attachment_create(self.swap.get(volume_id, volume_id), instance,
                                         connector, mode)


def test_a_stale_device_is_never_handed_out_or_read_as_another_volume(daemon, side):
    """CVE-2023-2088's class: A's attachment is deleted behind the host's
    back while its session is live; B is then exported on the same LUN
    number (LUN 0). The host is neither handed B as A nor reads B through
    A's old session."""
    a_vid, b_vid = new_volume(daemon), new_volume(daemon)
    a = side.attach(a_vid)
    write_block(a.device, os.urandom(BLOCK))
    for s in sessions_to(iqn_of(a_vid)):       # fail the stale I/O in 5 s, not 120
        Path(s, "recovery_tmo").write_text("5")
    assert call("DELETE", f"/attachments/{a.attachment_id}", token=daemon.token)[0] == 200
    assert acls_of(a_vid) == []

    # The storage side hands this host B's target for A: refused, rolled back.
    wrong = HostSide(WrongVolumeApi(side.api.client, {a_vid: b_vid}), brick,
                     str(side.records.parent))
    with pytest.raises(StepFailed, match=f"confirm device failed: .*not volume {a_vid}"):
        wrong.attach(a_vid)
    assert not sessions_to(iqn_of(b_vid))
    assert call("GET", f"/attachments?volume_id={b_vid}", token=daemon.token)[1] == \
        {"attachments": []}

    # B attached for real, on LUN 0 like A was, with its own data.
    b = side.attach(b_vid)
    assert b.serial == b_vid and b.device != a.device
    b_data = os.urandom(BLOCK)
    write_block(b.device, b_data)

    # A's old device cannot read anything, let alone B's data.
    res = subprocess.run(["dd", f"if={a.device}", "bs=1M", "count=1", "iflag=direct",
                          "status=none"], capture_output=True, timeout=120)
    assert res.returncode != 0 and b_data not in res.stdout

    side.detach(a.attachment_id, force=True)     # gone on the storage side: no error
    side.detach(b_vid)
    assert not sessions_to(iqn_of(a_vid)) and not sessions_to(iqn_of(b_vid))
