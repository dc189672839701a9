"""Volume backends on real devices, inside the VM: LVM (thick and thin) on
a loop-device volume group, and a loop device registered as a block volume."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from iscsiattach.exception import Conflict, InvalidInput, VolumeBackendError
from iscsiattach.target.model import BackingKind
from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.block import BlockBackend
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
    block, vid = BlockBackend(), new_vid()
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
