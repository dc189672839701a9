"""Host-side attach/detach orchestration against fakes of the API and os-brick."""
from __future__ import annotations

import json
import os
import stat

import pytest

from iscsiattach.exception import Conflict, IscsiAttachError, NotFound
from iscsiattach.host.attach import HostSide, StepFailed
from iscsiattach.host.confirm import Confirmed, DeviceMismatch

VID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
INFO = {"driver_volume_type": "iscsi", "target_iqn": "iqn.2010-10.org.openstack:volume-" + VID,
        "target_portal": "127.0.0.1:3260", "target_lun": 0, "auth_method": "CHAP",
        "auth_username": "u", "auth_password": "the-secret-0123", "volume_id": VID}


class FakeApi:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def _do(self, name, *args):
        self.calls.append((name, *args))
        if self.fail == name:
            raise IscsiAttachError(f"{name} refused (HTTP 500)")

    def attachment_create(self, volume_id, instance, connector, mode):
        self._do("create", volume_id, connector["initiator"], mode)
        self.made = getattr(self, "made", 0) + 1
        return {"id": f"att-{self.made}", "connection_info": dict(INFO)}

    def attachment_complete(self, att):
        self._do("complete", att)

    def attachment_delete(self, att):
        self._do("delete", att)
        if self.fail == "delete-404":
            raise NotFound(f"attachment {att} not found (HTTP 404)")

    def attachment_list(self, volume_id):
        return []

    def volume_size_gib(self, volume_id):
        self._do("size", volume_id)
        return 1


class FakeBrick:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def connector_properties(self, my_ip, multipath):
        return {"initiator": "iqn.2004-10.com.example:me", "ip": my_ip or "127.0.0.1",
                "host": "me", "multipath": multipath, "platform": "x86_64", "os_type": "linux2"}

    def connect(self, info, multipath):
        self.calls.append(("connect", info["target_iqn"]))
        if self.fail == "connect":
            raise IscsiAttachError("os-brick could not connect: timeout")
        return {"type": "block", "path": "/dev/disk/by-path/fake"}

    def disconnect(self, info, device, multipath, force=False):
        self.calls.append(("disconnect", force))


def ok_confirm(path, want):
    return Confirmed("/dev/sdq", want.volume_id, "naa.x", want.size_bytes, want.read_only)


def bad_confirm(path, want):
    raise DeviceMismatch("/dev/sdq has unit serial 'other', not volume " + want.volume_id)


def host(tmp_path, api, brick, confirm=ok_confirm, in_use=lambda dev: None):
    return HostSide(api, brick, str(tmp_path), confirm=confirm, in_use=in_use)


def test_attach_runs_every_step_and_records_without_the_secret(tmp_path):
    api, brick = FakeApi(), FakeBrick()
    got = host(tmp_path, api, brick).attach(VID, mode="ro")
    assert (got.attachment_id, got.device, got.mode) == ("att-1", "/dev/sdq", "ro")
    assert [c[0] for c in api.calls] == ["create", "size", "complete"]
    assert api.calls[0][2] == "iqn.2004-10.com.example:me"
    record = tmp_path / "attachments" / "att-1.json"
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    assert "the-secret" not in record.read_text()
    assert json.loads(record.read_text())["connection_info"]["target_lun"] == 0


@pytest.mark.parametrize("api_fail,brick_fail,confirm,step,disconnected", [
    (None, "connect", ok_confirm, "connect", False),
    ("size", None, ok_confirm, "volume size", True),
    (None, None, bad_confirm, "confirm device", True),
    ("complete", None, ok_confirm, "attachment complete", True),
])
def test_each_failing_step_rolls_back(tmp_path, api_fail, brick_fail, confirm, step,
                                     disconnected):
    api, brick = FakeApi(api_fail), FakeBrick(brick_fail)
    with pytest.raises(StepFailed, match=f"^{step} failed"):
        host(tmp_path, api, brick, confirm).attach(VID)
    assert ("delete", "att-1") in api.calls
    assert (("disconnect", True) in brick.calls) == disconnected
    assert not list((tmp_path / "attachments").glob("*.json"))


def test_a_wrong_device_in_use_by_another_attachment_is_not_disconnected(tmp_path):
    """Handed a device this host already uses for another attachment (the
    storage side sent that target): refuse it, but do not log it out."""
    api, brick = FakeApi(), FakeBrick()
    host(tmp_path, api, brick).attach(VID)
    with pytest.raises(StepFailed, match="confirm device failed"):
        host(tmp_path, api, brick, bad_confirm).attach(VID)
    assert not any(c[0] == "disconnect" for c in brick.calls)
    assert ("delete", "att-2") in api.calls and ("delete", "att-1") not in api.calls


def test_create_failure_needs_no_rollback(tmp_path):
    api, brick = FakeApi("create"), FakeBrick()
    with pytest.raises(StepFailed, match="attachment create failed"):
        host(tmp_path, api, brick).attach(VID)
    assert brick.calls == [] and [c[0] for c in api.calls] == ["create"]


def test_detach_by_volume_or_attachment_and_repeat(tmp_path):
    api, brick = FakeApi(), FakeBrick()
    side = host(tmp_path, api, brick)
    side.attach(VID)
    assert side.detach(VID) == ["att-1"]
    assert ("disconnect", False) in brick.calls and ("delete", "att-1") in api.calls
    assert side.detach(VID) == []          # nothing left: safe to repeat


def test_two_attachments_on_one_target_share_the_session_until_the_last(tmp_path):
    """Multiattach twice on one host: one ACL, one session, one device."""
    api, brick = FakeApi(), FakeBrick()
    side = host(tmp_path, api, brick, in_use=lambda dev: "open by pid 1")
    first, second = side.attach(VID), side.attach(VID)
    assert side.detach(first.attachment_id) == ["att-1"]
    assert not any(c[0] == "disconnect" for c in brick.calls)   # busy, but shared: kept
    assert ("delete", "att-1") in api.calls
    with pytest.raises(Conflict, match="open by pid 1"):         # the last one: checked
        side.detach(second.attachment_id)
    assert side.detach(second.attachment_id, force=True) == ["att-2"]
    assert ("disconnect", True) in brick.calls


def test_detach_of_an_attachment_deleted_on_the_storage_side(tmp_path):
    api, brick = FakeApi(), FakeBrick()
    side = host(tmp_path, api, brick)
    side.attach(VID)
    api.fail = "delete-404"
    assert side.detach(VID) == ["att-1"]           # logged out, record gone, no error
    assert ("disconnect", False) in brick.calls and side.detach(VID) == []


def test_detach_refuses_a_busy_device_unless_forced(tmp_path):
    api, brick = FakeApi(), FakeBrick()
    side = host(tmp_path, api, brick, in_use=lambda dev: "mounted at /mnt/data")
    side.attach(VID)
    with pytest.raises(Conflict, match="mounted at /mnt/data"):
        side.detach("att-1")
    assert ("delete", "att-1") not in api.calls
    assert side.detach("att-1", force=True) == ["att-1"]
    assert ("disconnect", True) in brick.calls


def test_brick_errors_never_quote_the_secret():
    from iscsiattach.host.brick import _why
    exc = RuntimeError("Unexpected error: "
                       "iscsiadm -n node.session.auth.password -v the-secret-0123")
    assert "the-secret" not in _why(exc, INFO) and "***" in _why(exc, INFO)


def test_device_in_use_names_the_process_holding_it_open(tmp_path):
    import subprocess
    import sys

    from iscsiattach.host.attach import device_in_use
    path = tmp_path / "disk"
    path.write_bytes(b"x")
    assert device_in_use(str(path)) is None
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1]); "
                               "print(flush=True); time.sleep(60)", str(path)],
                              stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        assert device_in_use(str(path)).startswith(f"open by pid {holder.pid} (")
    finally:
        holder.kill()
        holder.wait()


def test_stable_link_prefers_the_wwn_name_then_by_path(tmp_path):
    from iscsiattach.host.attach import stable_link
    dev = tmp_path / "sdq"
    dev.touch()
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-path").mkdir()
    (tmp_path / "by-path" / "ip-127.0.0.1:3260-iscsi-iqn.x-lun-0").symlink_to(dev)
    assert stable_link(str(dev), str(tmp_path), wait=0).endswith("-lun-0")
    (tmp_path / "by-id" / "scsi-36001405abc").symlink_to(dev)
    (tmp_path / "by-id" / "wwn-0x6001405abc").symlink_to(dev)
    (tmp_path / "by-id" / "wwn-0x6001405other").symlink_to(tmp_path / "sdz")
    assert stable_link(str(dev), str(tmp_path), wait=0) == str(tmp_path / "by-id" /
                                                               "wwn-0x6001405abc")
    assert stable_link(str(tmp_path / "sdy"), str(tmp_path), wait=0) is None


@pytest.mark.parametrize("layout", ["file", "discovered"])
def test_chap_secrets_go_into_the_node_record_not_argv(tmp_path, layout):
    from iscsiattach.host.brick import write_node_secret
    iqn = "iqn.2010-10.org.openstack:volume-x"
    target = tmp_path / iqn
    if layout == "file":
        record = target / "10.0.0.1,3260"
    else:
        record = target / "10.0.0.1,3260,1" / "default"
    record.parent.mkdir(parents=True)
    record.write_text("node.name = x\nnode.session.auth.password = old\n")
    write_node_secret(iqn, "10.0.0.1:3260", "node.session.auth.password", "s3cret",
                      node_dirs=(str(tmp_path),))
    lines = record.read_text().splitlines()
    assert lines == ["node.name = x", "node.session.auth.password = s3cret"]
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    with pytest.raises(IscsiAttachError, match="no open-iscsi node record"):
        write_node_secret(iqn, "10.0.0.2:3260", "node.session.auth.password", "s3cret",
                          node_dirs=(str(tmp_path),))


def test_the_connector_keeps_secrets_off_the_command_line(monkeypatch, tmp_path):
    """Our connector subclass intercepts os-brick's password update."""
    from iscsiattach.host import brick
    written, ran = [], []
    monkeypatch.setattr(brick, "write_node_secret", lambda *a: written.append(a))
    conn = brick._iscsi(False)
    monkeypatch.setattr(conn, "_run_iscsiadm", lambda props, cmd, **kw: ran.append(cmd) or
                        ("", ""))
    props = {"target_iqn": "iqn.2010-10.org.x:v", "target_portal": "10.0.0.1:3260"}
    conn._iscsiadm_update(props, "node.session.auth.password", "s3cret")
    conn._iscsiadm_update(props, "node.session.auth.username", "user")
    assert written == [("iqn.2010-10.org.x:v", "10.0.0.1:3260",
                        "node.session.auth.password", "s3cret")]
    assert all("s3cret" not in cmd for cmd in ran) and len(ran) == 1
