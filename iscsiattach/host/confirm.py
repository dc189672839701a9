"""Is the device that appeared really the volume that was asked for?

"Confirmed" means all of: the path is a block device; its SCSI identity
(VPD 0x80 unit serial and the 0x83 NAA designator, as the kernel read them
into sysfs) matches what the target advertises for this volume; its size
matches the volume; and a read-only attachment is read-only. Any mismatch is
an error and the device must not be handed to the caller: this is the guard
against stale devices and wrong volumes (CVE-2023-2088's class of bugs).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from iscsiattach.exception import DeviceMismatch
from iscsiattach.model import naa_wwn, unit_serial

SYSFS = Path("/sys")


@dataclass(frozen=True)
class Expected:
    volume_id: str
    size_bytes: int
    read_only: bool


@dataclass(frozen=True)
class Confirmed:
    path: str           # /dev/sdX (resolved)
    serial: str
    wwid: str
    size_bytes: int
    read_only: bool


def confirm(device_path: str, want: Expected, sysfs: Path = SYSFS) -> Confirmed:
    real = os.path.realpath(device_path)
    try:
        if not stat.S_ISBLK(os.stat(real).st_mode):
            raise DeviceMismatch(f"{device_path} is not a block device")
    except FileNotFoundError:
        raise DeviceMismatch(f"{device_path} does not exist") from None
    name = os.path.basename(real)
    block = sysfs / "block" / name
    serial = _vpd80_serial(block / "device" / "vpd_pg80")
    wwid = _read(block / "device" / "wwid")
    size = int(_read(block / "size")) * 512
    read_only = _read(block / "ro") == "1"
    if serial != unit_serial(want.volume_id):
        raise DeviceMismatch(f"{real} has unit serial {serial!r}, not volume {want.volume_id}")
    if wwid != naa_wwn(want.volume_id):
        raise DeviceMismatch(f"{real} has WWN {wwid!r}, expected {naa_wwn(want.volume_id)}")
    if size != want.size_bytes:
        raise DeviceMismatch(f"{real} holds {size} bytes, volume {want.volume_id} "
                             f"has {want.size_bytes}")
    if want.read_only and not read_only:
        raise DeviceMismatch(f"{real} is writable but the attachment is read-only")
    return Confirmed(real, serial, wwid, size, read_only)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise DeviceMismatch(f"cannot read {path}: {exc.strerror}") from None


def _vpd80_serial(path: Path) -> str:
    try:
        page = path.read_bytes()
    except OSError as exc:
        raise DeviceMismatch(f"cannot read {path}: {exc.strerror}") from None
    if len(page) < 4 or page[1] != 0x80:
        raise DeviceMismatch(f"{path} is not a unit serial page")
    # Header of 4 bytes, then the serial; LIO pads it with NULs.
    return page[4:4 + page[3]].decode(errors="replace").strip("\x00 ")
