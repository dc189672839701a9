"""The devref workflow through the service on real LIO, proved with real logins."""
from __future__ import annotations

import os
import uuid

import pytest

from iscsiattach.attachments.wiring import lock_dir, wire_services
from iscsiattach.model import Portal
from iscsiattach.targets.lio import LioBackend
from iscsiattach.targets.lio.configfs import CONFIGFS
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.file import FileBackend
from iscsiattach.volumes.lvm import LvmBackend
from tests.functional.conftest import PREFIX
from tests.functional.iscsi import NO_PORTAL, NO_TARGET, Node, initiator_name, write_and_read_back

PORTAL = Portal("127.0.0.1")


def _services(state, scratch, volumes=None):
    lio = LioBackend(prefix=PREFIX, lock_path=lock_dir(str(state)))
    return wire_services(str(state), lio, volumes or FileBackend(str(scratch / "volumes")),
                         (PORTAL,))


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def services(state, scratch_fs, backend):      # backend: cleans up our prefix after
    return _services(state, scratch_fs)


def connector(me):
    return {"initiator": me, "ip": "127.0.0.1", "host": "guest", "platform": "x86_64",
            "os_type": "linux", "multipath": False}


def login(info) -> Node:
    assert info["auth_method"] == "CHAP"
    node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
    node.setup(info["auth_username"], info["auth_password"].reveal())
    return node


def test_reserve_update_complete_delete_with_real_login(services):
    me = initiator_name()
    vol = services.volume_service.create(1)
    att, info = services.attachment_service.create(vol.id, str(uuid.uuid4()))
    assert info is None
    att, info = services.attachment_service.update(att.id, connector(me))
    node = login(info)
    assert node.login_retrying().returncode == 0
    dev = node.device()
    assert write_and_read_back(dev, 4 << 20)
    assert services.attachment_service.complete(att.id).status == "attached"
    assert services.store.volume(vol.id).status == "in-use"
    node.logout()
    services.attachment_service.delete(att.id)
    assert services.store.volume(vol.id).status == "available"
    node.assert_refused(NO_TARGET, NO_PORTAL)      # the target went with the attachment
    node.delete()
    services.volume_service.delete(vol.id)


def attach_and_login(services, vol_id):
    """Attachment create with this host's connector, then a real CHAP login."""
    att, info = services.attachment_service.create(vol_id, str(uuid.uuid4()),
                                                   connector(initiator_name()))
    node = login(info)
    assert node.login_retrying().returncode == 0
    return att, info, node, node.device()


def _attach_write_detach(services, vol_id):
    att, info, node, dev = attach_and_login(services, vol_id)
    assert write_and_read_back(dev, 2 << 20)
    node.delete()
    services.attachment_service.delete(att.id)
    return dev


def test_workflow_on_lvm_volume_group(state, scratch_fs, backend, volume_group):
    services = _services(state, scratch_fs, LvmBackend(volume_group))
    vol = services.volume_service.create(1)
    assert vol.location == f"/dev/{volume_group}/volume-{vol.id}"
    _attach_write_detach(services, vol.id)
    services.volume_service.delete(vol.id)
    assert not os.path.exists(vol.location)


def test_workflow_on_registered_block_device(state, scratch_fs, backend, loop_device):
    dev, _ = loop_device
    services = _services(state, scratch_fs, BlockBackend(["/dev/"]))
    vol = services.volume_service.create(1, source=dev)
    assert vol.location == dev and vol.size_gib == 3
    _attach_write_detach(services, vol.id)
    services.volume_service.delete(vol.id)
    assert os.path.exists(dev)          # registered, never destroyed


def test_create_and_connect_in_one_call_and_data_persists(services):
    vol = services.volume_service.create(1)
    att, info, node, dev = attach_and_login(services, vol.id)
    payload = b"iscsiattach" * 372 + b"\0" * 4
    with open(dev, "r+b", buffering=0) as f:
        f.write(payload.ljust(4096, b"\0"))
        os.fsync(f.fileno())
    node.delete()
    services.attachment_service.delete(att.id)
    # Attach again: the same bytes come back from the volume's file.
    att, info, node, dev = attach_and_login(services, vol.id)
    with open(dev, "rb", buffering=0) as f:
        assert f.read(4096).startswith(payload)
    node.delete()
    services.attachment_service.delete(att.id)


def test_reboot_restores_exports_and_the_same_login_works(services, state, scratch_fs):
    me = initiator_name()
    vol = services.volume_service.create(1, multiattach=True)
    att, info = services.attachment_service.create(vol.id, str(uuid.uuid4()), connector(me))
    services.attachment_service.complete(att.id)
    # "Reboot": our LIO objects vanish behind the service's back.
    services.target.unexport(vol.id)
    assert services.target.inspect(vol.id) is None
    restarted = _services(state, scratch_fs)       # a new process over the same state
    report = restarted.reconciler.run()
    assert report.volumes_repaired == 1
    node = login(info)                              # credentials from before the reboot
    assert node.login_retrying().returncode == 0
    assert write_and_read_back(node.device(), 1 << 20)
    node.delete()
    restarted.attachment_service.delete(att.id)
    assert restarted.reconciler.run().changed == 0


def test_orphan_export_under_our_prefix_is_removed(services, scratch_fs):
    me = initiator_name()
    vol = services.volume_service.create(1)
    services.attachment_service.create(vol.id, str(uuid.uuid4()), connector(me))
    # The store forgets the volume (as if restored from an older backup).
    services.store.remove_volume(vol.id)
    foreign = CONFIGFS / "iscsi" / ("iqn.2003-01.org.linux-iscsi.other:volume-" + vol.id)
    (foreign / "tpgt_1").mkdir(parents=True)
    try:
        report = services.reconciler.run()
        assert report.orphans_removed == 1
        assert services.target.inspect(vol.id) is None
        assert (foreign / "tpgt_1").is_dir(), "a foreign target was touched"
    finally:
        (foreign / "tpgt_1").rmdir()
        foreign.rmdir()


def test_extend_while_attached_host_sees_new_size_after_rescan(services):
    vol = services.volume_service.create(1)
    att, info, node, dev = attach_and_login(services, vol.id)
    assert write_and_read_back(dev, 1 << 20)
    services.volume_service.extend(vol.id, 2)
    name = os.path.basename(dev)
    with open(f"/sys/block/{name}/device/rescan", "w") as f:
        f.write("1")
    size = int(open(f"/sys/block/{name}/size").read()) * 512
    assert size == 2 << 30
    assert write_and_read_back(dev, 1 << 20, offset=(2 << 30) - (1 << 20))
    node.delete()
    services.attachment_service.delete(att.id)
