"""Device identity confirmation against a fake sysfs (real files in tmp)."""
from __future__ import annotations

import os

import pytest

from iscsiattach.host.confirm import DeviceMismatch, Expected, confirm
from iscsiattach.model import naa_wwn

VID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
OTHER = "9f0e0d4c-0b1a-4c4b-8a6e-0d3c2b1a0f9e"
GIB = 1 << 30


def fake_device(tmp_path, serial=VID, wwid=None, size=GIB, ro=False, name="sdq"):
    block = tmp_path / "sys" / "block" / name
    (block / "device").mkdir(parents=True)
    payload = serial.encode() + b"\x00\x00\x00"
    (block / "device" / "vpd_pg80").write_bytes(bytes([0, 0x80, 0, len(payload)]) + payload)
    (block / "device" / "wwid").write_text((wwid or naa_wwn(serial)) + "\n")
    (block / "size").write_text(f"{size // 512}\n")
    (block / "ro").write_text("1\n" if ro else "0\n")
    dev = tmp_path / "dev" / name
    dev.parent.mkdir(exist_ok=True)
    os.mknod(dev, 0o600 | 0o060000, os.makedev(7, 200))     # a block node, never opened
    return str(dev), tmp_path / "sys"


def test_matching_device_is_confirmed(tmp_path):
    dev, sysfs = fake_device(tmp_path)
    got = confirm(dev, Expected(VID, GIB, False), sysfs)
    assert (got.serial, got.wwid, got.size_bytes) == (VID, naa_wwn(VID), GIB)


def test_symlink_is_resolved(tmp_path):
    dev, sysfs = fake_device(tmp_path)
    link = tmp_path / "by-path-link"
    link.symlink_to(dev)
    assert confirm(str(link), Expected(VID, GIB, False), sysfs).path == dev


@pytest.mark.parametrize("kwargs,want,match", [
    ({"serial": OTHER}, Expected(VID, GIB, False), "unit serial"),
    ({"wwid": "naa.6001405deadbeef"}, Expected(VID, GIB, False), "WWN"),
    ({"size": 2 * GIB}, Expected(VID, GIB, False), "bytes"),
    ({"ro": False}, Expected(VID, GIB, True), "read-only"),
])
def test_mismatches_are_refused(tmp_path, kwargs, want, match):
    dev, sysfs = fake_device(tmp_path, **kwargs)
    with pytest.raises(DeviceMismatch, match=match):
        confirm(dev, want, sysfs)


def test_not_a_block_device_or_missing(tmp_path):
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(DeviceMismatch, match="not a block device"):
        confirm(str(plain), Expected(VID, GIB, False), tmp_path)
    with pytest.raises(DeviceMismatch, match="does not exist"):
        confirm(str(tmp_path / "nope"), Expected(VID, GIB, False), tmp_path)


def test_ro_device_for_rw_attachment_is_fine(tmp_path):
    dev, sysfs = fake_device(tmp_path, ro=True)
    assert confirm(dev, Expected(VID, GIB, False), sysfs).read_only is True
