"""The block backend never hands out a disk this host uses.

Every refusal with its message, on a pretend host (tests/unit/fake_host.py:
/dev, /sys and /proc in tmp_path): nothing allowed until configured; a
device that is on the root disk, mounted, a swap area, held (dm, md, LVM)
or already another volume, however its path is spelled; the same checks on
extend and before each export; and through the service and the API,
nothing recorded and nothing exported when refused.
"""
from __future__ import annotations

import uuid

import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.attachments.wiring import wire_services
from iscsiattach.exception import InvalidInput, NotFound, VolumeBackendError
from iscsiattach.model import Portal
from iscsiattach.secret import Secret
from iscsiattach.targets import fake as fake_module
from iscsiattach.volumes import options
from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.devices import DeviceNumber
from iscsiattach.volumes.file import FileBackend
from iscsiattach.volumes.lvm import LvmBackend
from tests.unit.api_client import Client
from tests.unit.fake_host import FakeHost
from tests.unit.test_attachments import connector, instance
from tests.unit.test_volumes import make_conf

VID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
OTHER = "5f0c8a1e-7f35-4a52-9b1a-3c4b2d1e0f99"
TOKEN = "t" * 43


@pytest.fixture
def host(tmp_path):
    """vda (partitions vda1, mounted at /, and vda2); vdb and vdc free;
    vdc has partitions vdc1 and vdc2."""
    h = FakeHost(tmp_path / "host")
    h.disk("vda", 0)
    h.disk("vda1", 1, parent="vda")
    h.disk("vda2", 2, parent="vda")
    h.mount_root("/dev/vda1")
    h.disk("vdb", 16, size=4 * GIB)
    h.disk("vdc", 32)
    h.disk("vdc1", 33, parent="vdc")
    h.disk("vdc2", 34, parent="vdc")
    return h


def refused(backend: BlockBackend, source: str, match: str, others=None) -> str:
    """The refusal of a create of ``source``, checked against ``match``."""
    with pytest.raises(InvalidInput, match=match) as e:
        backend.create(VID, 1, source=source, others=others)
    with pytest.raises(InvalidInput, match=match):
        backend.location_for(VID, source) if not others else \
            backend.check_exportable(source, others)
    return str(e.value)


# -- nothing until configured -------------------------------------------------------

def test_nothing_is_allowed_until_configured():
    for make in (lambda: BlockBackend(), lambda: BlockBackend([], [])):
        with pytest.raises(InvalidInput, match="block_allowed_prefixes or "
                                               "block_allowed_devices"):
            make()
    with pytest.raises(InvalidInput, match=r"\[volumes\] block_allowed_prefixes"):
        options.backend_from_conf(make_conf(backend="block"))


def test_options_make_a_backend_of_allowed_devices():
    block = options.backend_from_conf(make_conf(
        backend="block", block_allowed_devices=["/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"]))
    assert block.allowed_prefixes == ()
    assert block.allowed_devices == ("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",)


@pytest.mark.parametrize("bad", ["dev", "/dev/../etc", "", 7])
def test_bad_allowed_entries_refused(bad):
    with pytest.raises(InvalidInput):
        BlockBackend([bad])
    with pytest.raises(InvalidInput):
        BlockBackend([], [bad])


# -- paths are normalized, devices resolved --------------------------------------

@pytest.mark.parametrize("source", ["/dev/vdb", "/dev/./vdb", "/dev//vdb", "//dev/vdb",
                                    "/dev/././/vdb"])
def test_a_free_device_is_registered_under_its_normalized_path(host, source):
    made = host.backend().create(VID, 4, source=source)
    assert made.location == made.backing.path == "/dev/vdb" and made.size_gib == 4
    assert host.backend().location_for(VID, source) == "/dev/vdb"


def test_a_stable_link_is_kept_as_given(host):
    link = host.link("/dev/disk/by-id/wwn-1", "/dev/vdb")
    backend = host.backend(["/dev/disk/by-id/"])
    assert backend.create(VID, 1, source="/dev/disk//by-id/./wwn-1").location == link
    with pytest.raises(InvalidInput, match="outside"):
        backend.create(VID, 1, source="/dev/vdb")


def test_allowed_devices_match_the_device_not_the_text(host):
    host.link("/dev/disk/by-id/wwn-1", "/dev/vdb")
    backend = host.backend(prefixes=(), devices=["/dev/disk/by-id/wwn-1"])
    for source in ("/dev/disk/by-id/wwn-1", "/dev/vdb", "/dev/./vdb",
                   host.link("/dev/shm/elsewhere", "/dev/vdb")):
        assert backend.create(VID, 1, source=source).size_gib == 4
    message = refused(backend, "/dev/vdc", "outside")
    assert "block_allowed_prefixes" in message and "/dev/disk/by-id/wwn-1" in message
    # An allowed device that is not there (yet): named as missing, not as outside.
    missing = host.backend(prefixes=(), devices=["/dev/disk/by-id/wwn-2"])
    with pytest.raises(InvalidInput, match="no device at /dev/disk/by-id/wwn-2"):
        missing.create(VID, 1, source="/dev/disk/by-id/wwn-2")


def test_outside_what_is_allowed_nothing_tells_whether_a_path_exists(host):
    backend = host.backend(["/dev/disk/by-id/"])
    for source in ("/dev/vdb", "/dev/nothing", "/dev/null/x", "/proc/self/environ"):
        refused(backend, source, "^device path .* is outside the allowed prefixes")


def test_dot_dot_is_refused_not_resolved(host):
    backend = host.backend(["/dev/disk/by-id/"])
    for source in ("/dev/disk/by-id/../../vdb", "/dev/disk/by-id/.."):
        refused(backend, source, "without '..'")


# -- the root disk ------------------------------------------------------------------

@pytest.mark.parametrize("source", ["/dev/vda", "/dev/./vda", "/dev//vda", "/dev/vda1",
                                    "/dev/vda2"])
def test_the_root_disk_is_refused_however_named(host, source):
    message = refused(host.backend(), source, "is on the root disk")
    assert "(device 254:" in message


def test_a_symlink_to_the_root_disk_is_refused_anywhere(host):
    # In an allowed folder or not: the device it leads to is what is checked.
    planted = host.link("/dev/disk/by-id/planted", "/dev/vda")
    refused(host.backend(["/dev/disk/by-id/"]), planted, "is on the root disk")
    refused(host.backend(), host.link("/dev/shm/vda-link", "/dev/vda"), "is on the root disk")


def test_root_on_device_mapper_refuses_what_it_is_built_on(tmp_path):
    h = FakeHost(tmp_path / "host")
    h.disk("vdd", 48)
    h.disk("vdd1", 49, parent="vdd")
    h.disk("vdd2", 50, parent="vdd")
    h.disk("dm-0", 0, major=253)
    h.stack("/dev/dm-0", "/dev/vdd2")
    h.mount_root("/dev/dm-0")
    assert h.host.root_devices() == {DeviceNumber(253, 0), DeviceNumber(254, 50),
                                     DeviceNumber(254, 48)}
    for source in ("/dev/dm-0", "/dev/vdd", "/dev/vdd2", "/dev/vdd1"):
        refused(h.backend(), source, "is on the root disk")


def test_root_on_no_block_device_refuses_nothing_for_it(tmp_path):
    h = FakeHost(tmp_path / "host")        # / on 9p, as in the test VM
    h.disk("vdb", 16)
    assert h.host.root_devices() == set()
    assert h.backend().create(VID, 1, source="/dev/vdb").location == "/dev/vdb"


# -- mounted, swap, held -------------------------------------------------------------

def test_a_mounted_device_is_refused(host):
    host.mount("/dev/vdb", "/srv/my data")
    assert refused(host.backend(), "/dev/./vdb", "is in use") == \
        "/dev/vdb (device 254:16) is in use: it is mounted at /srv/my data"


def test_a_disk_with_a_mounted_partition_is_refused_and_so_is_the_partition(host):
    host.mount("/dev/vdc1", "/mnt")
    assert "its partition 254:33 is mounted at /mnt" in refused(host.backend(), "/dev/vdc",
                                                                "mounted")
    assert "it is mounted at /mnt" in refused(host.backend(), "/dev/vdc1", "mounted")
    # A partition beside it shares no byte with it.
    assert host.backend().create(VID, 1, source="/dev/vdc2").location == "/dev/vdc2"


def test_a_mount_known_only_by_its_source_counts(host):
    host.mount("/dev/vdb", "/srv/pool", fstype="btrfs", anonymous=True)
    refused(host.backend(), "/dev/vdb", "mounted at /srv/pool")


def test_a_swap_area_is_refused(host):
    host.swapon("/dev/vdb")
    assert refused(host.backend(), "/dev//vdb", "swap") == \
        "/dev/vdb (device 254:16) is in use: it is a swap area (/dev/vdb)"


def test_a_disk_with_a_swap_partition_is_refused(host):
    host.swapon(host.link("/dev/disk/by-uuid/swap 1", "/dev/vdc2"))
    assert "its partition 254:34 is a swap area (/dev/disk/by-uuid/swap 1)" in \
        refused(host.backend(), "/dev/vdc", "swap")


def test_a_held_device_is_refused(host):
    host.disk("dm-3", 3, major=253)
    host.stack("/dev/dm-3", "/dev/vdb")
    assert refused(host.backend(), "/dev/vdb", "held by") == \
        "/dev/vdb (device 254:16) is in use: it is held by dm-3 (device-mapper, md or LVM)"
    # What is built on top is free to register: nothing holds it.
    assert host.backend().create(VID, 1, source="/dev/dm-3").location == "/dev/dm-3"


def test_a_disk_whose_partition_is_held_is_refused(host):
    host.disk("md127", 0, major=9)
    host.stack("/dev/md127", "/dev/vdc1")
    assert "its partition 254:33 is held by md127" in refused(host.backend(), "/dev/vdc",
                                                             "held by")
    assert "its disk 254:32" not in refused(host.backend(), "/dev/vdc1", "held by")


def test_a_partition_of_a_held_disk_is_refused(host):
    host.disk("dm-4", 4, major=253)
    host.stack("/dev/dm-4", "/dev/vdc")       # multipath on the whole disk
    assert "its disk 254:32 is held by dm-4" in refused(host.backend(), "/dev/vdc2",
                                                       "held by")


# -- registered twice ---------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["/dev/vdb", "/dev/./vdb", "/dev//vdb", "link"])
def test_a_device_registered_as_another_volume_is_refused(host, spelling):
    source = host.link("/dev/shm/x", "/dev/vdb") if spelling == "link" else spelling
    message = refused(host.backend(), source, "already registered",
                      others={OTHER: "/dev/vdb"})
    assert message.endswith(f"it is volume {OTHER} (/dev/vdb)")


def test_a_disk_and_its_partition_are_never_two_volumes(host):
    assert "its partition 254:33 is volume" in refused(
        host.backend(), "/dev/vdc", "already registered", others={OTHER: "/dev/vdc1"})
    assert "its disk 254:32 is volume" in refused(
        host.backend(), "/dev/vdc2", "already registered", others={OTHER: "/dev/vdc"})
    # Sibling partitions share no byte; a vanished or odd location counts for nothing.
    others = {OTHER: "/dev/vdc1", VID: "/dev/gone", "x": "/dev/../vdc2"}
    assert host.backend().create(VID, 1, source="/dev/vdc2", others=others).size_gib == 10


# -- used again: extend, export -------------------------------------------------------

def test_extend_refuses_a_path_that_now_leads_elsewhere(host):
    link = host.link("/dev/disk/by-id/d1", "/dev/vdb")
    backend = host.backend(["/dev/disk/by-id/"])
    assert backend.create(VID, 1, source=link).size_gib == 4
    assert backend.extend(VID, link, 4).size_gib == 4
    host.remove(link)
    host.link(link, "/dev/vda")                   # after a reboot, say
    with pytest.raises(InvalidInput, match="on the root disk"):
        backend.extend(VID, link, 4)
    host.remove(link)
    host.link(link, "/dev/vdc")
    with pytest.raises(InvalidInput, match=f"already registered: it is volume {OTHER}"):
        backend.extend(VID, link, 4, others={OTHER: "/dev/vdc"})
    host.remove(link)
    with pytest.raises(NotFound, match="does not exist"):
        backend.extend(VID, link, 4)


def test_extend_refuses_a_device_in_use_since(host):
    backend = host.backend()
    backend.create(VID, 1, source="/dev/vdb")
    host.mount("/dev/vdb", "/mnt")
    with pytest.raises(InvalidInput, match="mounted at /mnt"):
        backend.extend(VID, "/dev/vdb", 4)


def test_check_exportable(host):
    backend = host.backend()
    backend.check_exportable("/dev/vdb", {OTHER: "/dev/vdc"})
    host.swapon("/dev/vdb")
    with pytest.raises(InvalidInput, match="swap area"):
        backend.check_exportable("/dev/vdb")
    with pytest.raises(InvalidInput, match="no device at /dev/gone"):
        backend.check_exportable("/dev/gone")
    with pytest.raises(InvalidInput, match="outside"):
        host.backend(["/dev/disk/"]).check_exportable("/dev/vdc")


def test_backends_that_make_their_storage_check_nothing(tmp_path):
    FileBackend(str(tmp_path)).check_exportable("/anything", {OTHER: "/anything"})
    LvmBackend("vg0", run=None).check_exportable("/dev/vg0/x")
    assert not FileBackend(str(tmp_path)).needs_other_locations


def test_a_device_sysfs_does_not_describe_is_refused(host):
    host.disk("vde", 64)
    host.base.joinpath("sys/dev/block/254:64").unlink()
    with pytest.raises(VolumeBackendError, match="sysfs does not describe it"):
        host.backend().create(VID, 1, source="/dev/vde")


def test_provisioned_reads_what_the_path_leads_to(host):
    backend = host.backend()
    assert backend.provisioned(VID, "/dev//vdb").location == "/dev/vdb"
    assert backend.provisioned(VID, "/dev/gone") is None


# -- through the service and the API ------------------------------------------------

@pytest.fixture
def block_services(tmp_path, host, fake_target, monkeypatch):
    # The fake target checks a backing on the real filesystem, as LIO
    # would; here the devices are the pretend host's.
    monkeypatch.setattr(fake_module, "check_backing", lambda backing: host.stat(backing.path))
    services = wire_services(str(tmp_path / "state"), fake_target, host.backend(),
                             (Portal("127.0.0.1"),), max_size_gib=100)
    yield services
    services.store.close()


@pytest.mark.parametrize("spelling", ["/dev/./vdb", "/dev//vdb", "/dev/shm/vdb"])
def test_the_service_refuses_a_second_volume_on_one_device(block_services, host, spelling):
    host.link("/dev/shm/vdb", "/dev/vdb")
    first = block_services.volume_service.create(1, source="/dev/vdb")
    with pytest.raises(InvalidInput, match=f"already registered: it is volume {first.id}"):
        block_services.volume_service.create(1, source=spelling)
    assert block_services.volume_service.list_volumes() == [first], "a refusal records nothing"


def test_the_service_refuses_a_device_in_use(block_services, host):
    host.mount("/dev/vdc1", "/boot/efi")
    with pytest.raises(InvalidInput, match="mounted at /boot/efi"):
        block_services.volume_service.create(1, source="/dev/vdc")
    assert block_services.volume_service.list_volumes() == []


def test_a_connect_is_refused_once_the_device_is_in_use(block_services, host, fake_target):
    vol = block_services.volume_service.create(1, source="/dev/vdb")
    host.mount("/dev/vdb", "/mnt")
    with pytest.raises(InvalidInput, match="mounted at /mnt"):
        block_services.attachment_service.create(vol.id, instance(), connector())
    assert fake_target.inspect(vol.id) is None, "exported a device in use"
    with pytest.raises(InvalidInput, match="mounted at /mnt"):
        block_services.volume_service.extend(vol.id, 5)
    assert block_services.volume_service.show(vol.id).size_gib == 4


def test_a_restore_does_not_export_a_path_that_now_leads_to_another_volume(
        block_services, host, fake_target):
    first = block_services.volume_service.create(
        1, source=host.link("/dev/disk/by-id/d1", "/dev/vdb"))
    second = block_services.volume_service.create(1, source="/dev/vdc")
    for vol in (first, second):
        block_services.attachment_service.create(vol.id, instance(), connector())
        fake_target.unexport(vol.id)              # a reboot
    host.remove("/dev/disk/by-id/d1")
    host.link("/dev/disk/by-id/d1", "/dev/vdc")   # ... after which d1 is vdc
    report = block_services.reconciler.run()
    assert fake_target.inspect(first.id) is None and fake_target.inspect(second.id) is None
    assert sorted(report.errors) == sorted([
        f"volume {first.id}: /dev/disk/by-id/d1 (device 254:32) is already registered: "
        f"it is volume {second.id} (/dev/vdc)",
        f"volume {second.id}: /dev/vdc (device 254:32) is already registered: "
        f"it is volume {first.id} (/dev/disk/by-id/d1)"])


def test_the_api_answers_400_with_cinders_fault_body(block_services, host):
    api = Client(build_app(block_services, Auth("token", Secret(TOKEN))), TOKEN)
    for source, reason in (("/dev/./vda", "on the root disk"),
                           (host.link("/dev/shm/root", "/dev/vda"), "on the root disk"),
                           ("/etc/passwd", "outside the allowed prefixes")):
        ans = api.post("/v3/volumes", {"volume": {"size": 1, "source": source}})
        assert ans.status == 400
        assert ans.body["badRequest"]["code"] == 400
        assert reason in ans.body["badRequest"]["message"]
    assert api.get("/v3/volumes").body["volumes"] == []


def test_host_devices_reads_procfs_escapes_and_missing_swaps(host):
    host.mount("/dev/vdb", "/srv/a b")
    assert (DeviceNumber(254, 16), "/srv/a b") in host.host.mounts()
    (host.base / "proc/swaps").unlink()
    assert host.host.swaps() == {}
    assert host.host.partitions(DeviceNumber(254, 32)) == [DeviceNumber(254, 33),
                                                            DeviceNumber(254, 34)]
    assert host.host.whole_disk(DeviceNumber(254, 34)) == DeviceNumber(254, 32)
    assert host.host.whole_disk(DeviceNumber(254, 16)) == DeviceNumber(254, 16)


def test_messages_name_no_volume_secret(block_services, host):
    """Refusals name paths, device numbers and volume ids only."""
    vol = block_services.volume_service.create(1, source="/dev/vdb")
    att, info = block_services.attachment_service.create(vol.id, instance(), connector())
    with pytest.raises(InvalidInput) as e:
        block_services.volume_service.create(1, source="/dev/vdb")
    assert info["auth_password"].reveal() not in str(e.value)
    assert uuid.UUID(vol.id) and vol.id in str(e.value)
