"""What this host does with its block devices, read from sysfs and procfs.

The block backend asks before it registers or exports a device: is it
mounted, a swap area, held by device-mapper, md or LVM, or the disk under
the root filesystem? Every answer comes from files under ``root`` (``/`` on
a real host, a tree in a temporary directory in unit tests), and a device
is always named by its major:minor, never by a path: a path is text that
can be dressed up (``/dev/./vda``, ``/dev//vda``, a symlink anywhere), the
device number it leads to cannot.

Nothing here opens a device: only ``stat`` and small sysfs/procfs reads.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from typing import NamedTuple

from iscsiattach.exception import NotABlockDevice

SECTOR = 512    # sysfs reports a device's size in 512-byte sectors, always

StatFunction = Callable[[str], os.stat_result]


class DeviceNumber(NamedTuple):
    """A block device's identity on this host while it is up: major:minor."""
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}:{self.minor}"

    @classmethod
    def parse(cls, text: str) -> DeviceNumber:
        """From sysfs' and mountinfo's "M:m"; ValueError if malformed."""
        major, minor = text.strip().split(":")
        return cls(int(major), int(minor))


class Mount(NamedTuple):
    device: DeviceNumber
    mount_point: str


def _unescape(field: str) -> str:
    """procfs writes a space in a path as \\040 (octal), and so on."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class HostDevices:
    """Block devices as this host sees them, with /sys and /proc under ``root``.

    ``stat`` resolves device paths (given paths are never put under
    ``root``: they are the caller's, and the kernel follows their symlinks).
    Unit tests pass a fake one, since making device nodes needs root.
    """

    def __init__(self, root: str = "/", stat_path: StatFunction = os.stat) -> None:
        self.root = root
        self._stat = stat_path

    # -- one device ---------------------------------------------------------------
    def known(self, device: DeviceNumber) -> bool:
        """Whether sysfs describes the device: without that, nothing below
        can tell whether it is in use, and a check must not pass by default."""
        return os.path.isdir(self._sysfs(device))

    def resolve(self, path: str) -> DeviceNumber:
        """The device ``path`` leads to, symlinks followed.

        FileNotFoundError if nothing is there (NotADirectoryError too, for
        "/dev/null/x"), NotABlockDevice if something else is.
        """
        found = self._stat(path)
        if not stat.S_ISBLK(found.st_mode):
            raise NotABlockDevice(f"{path} is not a block device")
        return DeviceNumber(os.major(found.st_rdev), os.minor(found.st_rdev))

    def size(self, device: DeviceNumber) -> int:
        """Bytes, from sysfs: no open of the device needed."""
        with open(self._sysfs(device, "size"), encoding="ascii") as f:
            return int(f.read().strip()) * SECTOR

    def whole_disk(self, device: DeviceNumber) -> DeviceNumber:
        """The disk a partition is part of; a device that is no partition is its own."""
        if not os.path.exists(self._sysfs(device, "partition")):
            return device
        # /sys/dev/block/M:m links to .../block/vda/vda1: the disk is the parent.
        parent = os.path.dirname(os.path.realpath(self._sysfs(device)))
        return self._read_number(os.path.join(parent, "dev")) or device

    def partitions(self, device: DeviceNumber) -> list[DeviceNumber]:
        """The partitions of a whole disk (none for a partition or an unpartitioned disk)."""
        folder = os.path.realpath(self._sysfs(device))
        found = []
        for entry in self._listdir(folder):
            child = os.path.join(folder, entry)
            if os.path.exists(os.path.join(child, "partition")):
                number = self._read_number(os.path.join(child, "dev"))
                if number is not None:
                    found.append(number)
        return sorted(found)

    def holders(self, device: DeviceNumber) -> list[str]:
        """Kernel names of what stacks on the device (dm-0, md127): non-empty
        while device-mapper (LVM, crypt, multipath) or md uses it."""
        return sorted(self._listdir(self._sysfs(device, "holders")))

    def slaves(self, device: DeviceNumber) -> list[DeviceNumber]:
        """What a dm or md device is built on."""
        folder = self._sysfs(device, "slaves")
        found = (self._read_number(os.path.join(folder, name, "dev"))
                 for name in self._listdir(folder))
        return sorted(n for n in found if n is not None)

    def sharing_bytes(self, device: DeviceNumber) -> set[DeviceNumber]:
        """The device and those holding some of its bytes: the whole disk of
        a partition, the partitions of a disk."""
        whole = self.whole_disk(device)
        return {device, whole} if whole != device else {device, *self.partitions(device)}

    # -- the host's use of devices -------------------------------------------------
    def mounts(self) -> list[Mount]:
        """Every mounted block device of this mount namespace, with where.

        A filesystem with an anonymous device number (btrfs, overlay, 9p,
        tmpfs: major 0) counts by its source when that is a block device.
        """
        found = []
        for line in self._read_lines(os.path.join("proc", "self", "mountinfo")):
            fields = line.split()
            try:
                number = DeviceNumber.parse(fields[2])
                mount_point = _unescape(fields[4])
                source = _unescape(fields[fields.index("-") + 2])
            except (IndexError, ValueError):
                continue                        # a line we cannot read names nothing
            if number.major != 0:
                found.append(Mount(number, mount_point))
            elif source.startswith("/"):
                device = self._resolve_quietly(source)
                if device is not None:
                    found.append(Mount(device, mount_point))
        return found

    def swaps(self) -> dict[DeviceNumber, str]:
        """Block devices in use as swap areas, with the path /proc/swaps names.
        (A swap file is on a filesystem, hence on a mounted device.)"""
        found = {}
        # A header line first; no file at all on a kernel built without swap.
        for line in self._read_lines(os.path.join("proc", "swaps"), missing_ok=True)[1:]:
            fields = line.split()
            if not fields:
                continue
            path = _unescape(fields[0])
            device = self._resolve_quietly(path)
            if device is not None:
                found[device] = path
        return found

    def root_devices(self) -> set[DeviceNumber]:
        """The devices under the root filesystem: the one mounted at /, the
        devices it is built on (dm, md: their slaves, all the way down) and
        the whole disk of each. Empty when / is on no block device (9p,
        tmpfs, an NFS root)."""
        pending = [m.device for m in self.mounts() if m.mount_point == "/"]
        found: set[DeviceNumber] = set()
        while pending:
            device = pending.pop()
            if device in found:
                continue
            found.add(device)
            pending.append(self.whole_disk(device))
            pending.extend(self.slaves(device))
        return found

    # -- plumbing ---------------------------------------------------------------------
    def _sysfs(self, device: DeviceNumber, *parts: str) -> str:
        return os.path.join(self.root, "sys", "dev", "block", str(device), *parts)

    def _resolve_quietly(self, path: str) -> DeviceNumber | None:
        try:
            return self.resolve(path)
        except (OSError, NotABlockDevice):
            return None

    def _read_lines(self, relative: str, missing_ok: bool = False) -> list[str]:
        try:
            with open(os.path.join(self.root, relative), encoding="utf-8",
                      errors="surrogateescape") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            if missing_ok:
                return []
            raise

    @staticmethod
    def _read_number(path: str) -> DeviceNumber | None:
        try:
            with open(path, encoding="ascii") as f:
                return DeviceNumber.parse(f.read())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _listdir(path: str) -> Iterable[str]:
        try:
            return os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
