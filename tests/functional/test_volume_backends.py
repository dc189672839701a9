"""Volume backends on real devices, inside the VM: LVM (thick and thin) on
a loop-device volume group, and a loop device registered as a block volume;
loop devices in use (mounted, swap, held by LVM, already registered) refused."""
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from iscsiattach.exception import Conflict, InvalidInput, VolumeBackendError
from iscsiattach.model import BackingKind
from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.devices import HostDevices
from iscsiattach.volumes.lvm import LvmBackend
from tests.functional.conftest import sh

MARK = b"iscsiattach!" * 341 + b"...."     # 4096 bytes
MARK_OFFSET = 1 << 20                       # past what lvcreate -Zy zeroes


def device_size(path: str) -> int:
    return int(sh("blockdev", "--getsize64", path))


def write_mark(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, MARK, MARK_OFFSET)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_mark_area(path: str) -> bytes:
    # Direct I/O: the device may be new behind a reused dev_t, and the page
    # cache must not answer for it.
    return subprocess.run(["dd", f"if={path}", "bs=4096", "count=1",
                           f"skip={MARK_OFFSET // 4096}", "iflag=direct", "status=none"],
                          check=True, capture_output=True).stdout


def new_vid() -> str:
    return str(uuid.uuid4())


# -- lvm ----------------------------------------------------------------------

def test_lvm_thick_lifecycle(volume_group):
    lvm, vid = LvmBackend(volume_group), new_vid()
    path = f"/dev/{volume_group}/volume-{vid}"
    made = lvm.create(vid, 1)
    assert made.location == path and made.size_gib == 1
    assert made.backing.kind is BackingKind.BLOCK and made.backing.path == path
    assert device_size(path) == GIB
    assert lvm.create(vid, 1) == made
    with pytest.raises(Conflict):
        lvm.create(vid, 2)

    grown = lvm.extend(vid, path, 2)
    assert grown.size_gib == 2 and device_size(path) == 2 * GIB
    assert lvm.extend(vid, path, 2) == grown
    with pytest.raises(InvalidInput):
        lvm.extend(vid, path, 1)
    assert lvm.provisioned(vid, path) == grown

    lvm.delete(vid, path)
    assert not os.path.exists(path)
    assert lvm.provisioned(vid, path) is None
    lvm.delete(vid, path)


def test_lvm_thick_delete_discards_the_data(volume_group):
    lvm = LvmBackend(volume_group)
    first = lvm.create(new_vid(), 1)
    write_mark(first.location)
    assert read_mark_area(first.location) == MARK
    lvm.delete(first.location.rsplit("volume-", 1)[1], first.location)
    # An empty VG allocates from its first extent: the same ones again.
    second = lvm.create(new_vid(), 1)
    assert read_mark_area(second.location) == bytes(4096)


def test_lvm_delete_refused_while_in_use(volume_group):
    lvm, vid = LvmBackend(volume_group), new_vid()
    made = lvm.create(vid, 1)
    write_mark(made.location)
    # An exclusive open, as LIO's iblock holds on an exported LV.
    fd = os.open(made.location, os.O_RDONLY | os.O_EXCL)
    try:
        with pytest.raises(VolumeBackendError, match="^lvremove failed for .*in use"):
            lvm.delete(vid, made.location)
    finally:
        os.close(fd)
    assert read_mark_area(made.location) == MARK, "an in-use LV must keep its data"
    lvm.delete(vid, made.location)
    assert lvm.provisioned(vid, made.location) is None


def test_lvm_thin_lifecycle(volume_group):
    sh("lvcreate", "-q", "-y", "-L", "1g", "-T", f"{volume_group}/pool")
    lvm, vid = LvmBackend(volume_group, thin_pool="pool"), new_vid()
    path = f"/dev/{volume_group}/volume-{vid}"
    made = lvm.create(vid, 2)                  # more than the pool: thin
    assert made.size_gib == 2 and device_size(path) == 2 * GIB
    assert sh("lvs", "--noheadings", "-o", "pool_lv", f"{volume_group}/volume-{vid}") == "pool"
    assert lvm.create(vid, 2) == made
    assert lvm.extend(vid, path, 3).size_gib == 3 and device_size(path) == 3 * GIB
    lvm.delete(vid, path)
    assert lvm.provisioned(vid, path) is None
    assert not os.path.exists(path)


def test_lvm_errors_are_one_line(volume_group):
    lvm = LvmBackend(volume_group)
    with pytest.raises(VolumeBackendError) as e:
        lvm.create(new_vid(), 50)                 # the VG holds under 3 GiB
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("lvcreate failed for ") and "free space" in str(e.value)
    missing, vid = LvmBackend(f"{volume_group}-missing"), new_vid()
    with pytest.raises(VolumeBackendError, match="^lvs failed for .*[Vv]olume group"):
        missing.provisioned(vid, missing.path(vid))


# -- block --------------------------------------------------------------------

def test_block_registers_a_loop_device(loop_device, tmp_path):
    dev, image = loop_device
    write_mark(dev)
    block, vid = BlockBackend(["/dev/"]), new_vid()
    made = block.create(vid, 2, source=dev)
    assert made.location == dev and made.size_gib == 3
    assert made.backing.kind is BackingKind.BLOCK and made.backing.path == dev
    assert block.create(vid, 3, source=dev) == made
    with pytest.raises(InvalidInput, match="less than"):
        block.create(vid, 4, source=dev)

    with pytest.raises(InvalidInput, match="grow the device"):
        block.extend(vid, dev, 4)
    with open(image, "r+b") as f:
        f.truncate(5 * GIB)
    sh("losetup", "--set-capacity", dev)
    assert block.extend(vid, dev, 4).size_gib == 5

    block.delete(vid, dev)
    assert block.provisioned(vid, dev).size_gib == 5, "delete only forgets"
    assert read_mark_area(dev) == MARK, "the backend never writes the device"


def test_block_keeps_a_symlink_path(loop_device, tmp_path):
    dev, _ = loop_device
    links = tmp_path / "by-id"
    links.mkdir()
    (links / "disk-1").symlink_to(dev)
    block = BlockBackend([str(links)])
    made = block.create(new_vid(), 1, source=str(links / "disk-1"))
    assert made.location == str(links / "disk-1") and made.size_gib == 3
    with pytest.raises(InvalidInput, match="outside"):
        block.create(new_vid(), 1, source=dev)


# -- block: a device this host uses is refused ----------------------------------

ANY_DEV = ["/dev/"]      # the widest allowance: only the in-use checks stand between


@contextlib.contextmanager
def mounted(dev: str, where: Path):
    where.mkdir(exist_ok=True)
    sh("mount", dev, str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_block_refuses_a_mounted_loop_device(loop_device, tmp_path):
    dev, _ = loop_device
    sh("mkfs.ext4", "-q", "-F", dev)
    block = BlockBackend(ANY_DEV)
    with mounted(dev, tmp_path / "mnt") as mnt:
        for source in (dev, dev.replace("/dev/", "/dev/./"), dev.replace("/dev/", "/dev//")):
            with pytest.raises(InvalidInput, match=f"^{dev} .* is in use: it is mounted "
                                                   f"at {mnt}$"):
                block.create(new_vid(), 1, source=source)
    assert block.create(new_vid(), 1, source=dev).location == dev, "free again once unmounted"


def test_block_refuses_a_loop_device_under_lvm(volume_group, loop_device):
    dev, _ = loop_device
    sh("lvcreate", "-q", "-y", "-L", "1g", "-n", "lv", volume_group)
    holder = os.listdir(f"/sys/class/block/{os.path.basename(dev)}/holders")
    assert len(holder) == 1 and holder[0].startswith("dm-")
    with pytest.raises(InvalidInput, match=f"is in use: it is held by {holder[0]} "
                                           r"\(device-mapper, md or LVM\)$"):
        BlockBackend(ANY_DEV).create(new_vid(), 1, source=dev)
    # The LV on it holds nothing itself (the lvm backend's volumes are such LVs).
    lv = f"/dev/{volume_group}/lv"
    assert BlockBackend(ANY_DEV).create(new_vid(), 1, source=lv).location == lv


def test_block_refuses_a_loop_device_used_as_swap(loop_device):
    dev, _ = loop_device
    sh("mkswap", dev)
    sh("swapon", dev)
    try:
        with pytest.raises(InvalidInput, match=f"is in use: it is a swap area \\({dev}\\)$"):
            BlockBackend(ANY_DEV).create(new_vid(), 1, source=dev)
    finally:
        subprocess.run(["swapoff", dev], check=False)


@pytest.fixture
def shm_link(loop_device):
    """A symlink in /dev/shm to the loop device (what anyone who may write
    /dev/shm can plant); removed after."""
    dev, _ = loop_device
    shm = Path("/dev/shm")
    made_shm = not shm.is_dir()
    shm.mkdir(exist_ok=True)
    link = shm / f"iscsiattach-{uuid.uuid4()}"
    link.symlink_to(dev)
    yield str(link)
    link.unlink(missing_ok=True)
    if made_shm:
        shm.rmdir()


def test_block_one_device_is_never_two_volumes(loop_device, shm_link, tmp_path):
    """Through the service and the API (over the fake target: no export is
    made): a second registration of one loop device, however its path is
    spelled, is a 400 with Cinder's fault body, and nothing is recorded."""
    from iscsiattach.api.app import Auth
    from iscsiattach.api.routes import build_app
    from iscsiattach.attachments.wiring import wire_services
    from iscsiattach.model import Portal
    from iscsiattach.secret import Secret
    from iscsiattach.targets.fake import FakeBackend
    from tests.functional.conftest import PREFIX
    from tests.unit.api_client import Client
    dev, _ = loop_device
    services = wire_services(str(tmp_path / "state"), FakeBackend(prefix=PREFIX),
                             BlockBackend(ANY_DEV), (Portal("127.0.0.1"),))
    try:
        api = Client(build_app(services, Auth("token", Secret("t" * 43))), "t" * 43)
        first = api.post("/v3/volumes", {"volume": {"size": 1, "source": dev}})
        assert first.status == 202, first.body
        vid = first.body["volume"]["id"]
        for source in (dev.replace("/dev/", "/dev/./"), dev.replace("/dev/", "/dev//"),
                       shm_link):
            again = api.post("/v3/volumes", {"volume": {"size": 1, "source": source}})
            assert again.status == 400, again.body
            assert again.body["badRequest"]["message"].endswith(
                f"is already registered: it is volume {vid} ({dev})")
        assert [v["id"] for v in api.get("/v3/volumes").body["volumes"]] == [vid]
    finally:
        services.store.close()


def test_block_connect_refused_once_the_device_is_mounted(backend, loop_device, tmp_path):
    """Real LIO: a registered device mounted since is never exported."""
    from iscsiattach.attachments.wiring import lock_dir, wire_services
    from iscsiattach.model import Portal
    from iscsiattach.targets.lio import LioBackend
    from tests.functional.conftest import PREFIX
    dev, _ = loop_device
    state = tmp_path / "state"
    lio = LioBackend(prefix=PREFIX, lock_path=lock_dir(str(state)))
    services = wire_services(str(state), lio, BlockBackend(ANY_DEV), (Portal("127.0.0.1"),))
    try:
        vol = services.volume_service.create(1, source=dev)
        sh("mkfs.ext4", "-q", "-F", dev)
        with mounted(dev, tmp_path / "mnt") as mnt:
            conn = {"initiator": "iqn.2004-10.com.example:refused", "ip": "127.0.0.1",
                    "host": "guest", "platform": "x86_64", "os_type": "linux",
                    "multipath": False}
            with pytest.raises(InvalidInput, match=f"it is mounted at {mnt}$"):
                services.attachment_service.create(vol.id, str(uuid.uuid4()), conn)
            assert lio.inspect(vol.id) is None, "a mounted device was exported"
            with pytest.raises(InvalidInput, match=f"it is mounted at {mnt}$"):
                services.volume_service.extend(vol.id, 4)
    finally:
        services.store.close()


def test_block_root_disk(loop_device):
    """The VM's / is 9p (virtme): no block device holds it, so the root-disk
    check refuses nothing here and a free loop device registers (the
    refusal itself is in the unit tests). On a guest with a block root,
    every device under / is refused as the root disk."""
    host = HostDevices()
    roots = host.root_devices()
    root_fs = [line.split(" - ")[1].split()[0] for line in
               Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4] == "/"]
    if not roots:
        assert set(root_fs) <= {"9p", "virtiofs", "tmpfs", "overlay", "nfs", "rootfs"}, root_fs
        dev, _ = loop_device
        assert BlockBackend(ANY_DEV).create(new_vid(), 1, source=dev).location == dev
    for number in sorted(roots):
        uevent = Path(f"/sys/dev/block/{number}/uevent").read_text()
        name = next(x.split("=", 1)[1] for x in uevent.splitlines() if x.startswith("DEVNAME="))
        with pytest.raises(InvalidInput, match="is on the root disk"):
            BlockBackend(ANY_DEV).create(new_vid(), 1, source=f"/dev/{name}")
