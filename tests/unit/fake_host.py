"""A pretend host for the block backend: /dev, /sys and /proc in a temporary
directory, laid out as the kernel lays them out.

Device nodes are empty regular files (making real ones needs root); the
``stat`` given to HostDevices looks every path up under the tree and
reports a node as the block device it stands for. Symlinks are real, and
relative, so the kernel's own path walk (".", "//", links) is what runs.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.devices import DeviceNumber, HostDevices

VIRTIO_MAJOR = 254


class FakeHost:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.numbers: dict[int, DeviceNumber] = {}        # inode of a node -> its device
        self.names: dict[DeviceNumber, str] = {}
        for folder in ("dev/shm", "dev/disk/by-id", "sys/dev/block", "sys/devices", "proc/self"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        # / on 9p, as in the test VM: no block device under it.
        self._mountinfo = ["21 1 0:20 / / rw,relatime - 9p /dev/root rw,trans=virtio"]
        self._swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"]
        self._write_proc()
        self.host = HostDevices(str(base), stat_path=self.stat)

    # -- building the host ------------------------------------------------------------
    def disk(self, name: str, minor: int, size: int = 10 * GIB, parent: str | None = None,
             major: int = VIRTIO_MAJOR) -> str:
        """A disk (or, with ``parent``, a partition of it): its /dev node and
        sysfs folder; returns its /dev path."""
        number = DeviceNumber(major, minor)
        if parent is None:
            folder = self.base / "sys/devices/virtual/block" / name
        else:
            folder = self._folder(self.number_of(f"/dev/{parent}")) / name
        folder.mkdir(parents=True)
        (folder / "dev").write_text(f"{number}\n")
        (folder / "size").write_text(f"{size // 512}\n")
        (folder / "holders").mkdir()
        (folder / "slaves").mkdir()
        if parent is not None:
            (folder / "partition").write_text(f"{minor}\n")
        os.symlink(os.path.relpath(folder, self.base / "sys/dev/block"),
                   self.base / "sys/dev/block" / str(number))
        node = self.base / "dev" / name
        node.write_bytes(b"")
        self.numbers[node.stat().st_ino] = number
        self.names[number] = name
        return f"/dev/{name}"

    def link(self, path: str, target: str) -> str:
        """A symlink at ``path`` (absolute, as the backend sees it) to ``target``."""
        where = self.base / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(self.base / target.lstrip("/"), where.parent), where)
        return path

    def remove(self, path: str) -> None:
        (self.base / path.lstrip("/")).unlink()

    def mount(self, path: str, mount_point: str, fstype: str = "ext4",
              anonymous: bool = False) -> None:
        """``anonymous``: as btrfs shows a mount, with a device number of
        major 0; only its source names the device."""
        number = "0:45" if anonymous else self.number_of(path)
        self._mountinfo.append(f"{30 + len(self._mountinfo)} 21 {number} / "
                               f"{mount_point.replace(' ', chr(92) + '040')} rw,relatime "
                               f"shared:1 - {fstype} {path} rw")
        self._write_proc()

    def mount_root(self, path: str) -> None:
        """/ on ``path`` (instead of 9p)."""
        number = self.number_of(path)
        self._mountinfo[0] = f"21 1 {number} / / rw,relatime - ext4 {path} rw"
        self._write_proc()

    def swapon(self, path: str) -> None:
        self._swaps.append(f"{path.replace(' ', chr(92) + '040')}\tpartition\t1048572\t0\t-2")
        self._write_proc()

    def stack(self, upper: str, *lower: str) -> None:
        """``upper`` (a dm or md device) built on ``lower``: holders/ and slaves/."""
        up = self._folder(self.number_of(upper))
        for path in lower:
            down = self._folder(self.number_of(path))
            os.symlink(os.path.relpath(up, down / "holders"), down / "holders" / up.name)
            os.symlink(os.path.relpath(down, up / "slaves"), up / "slaves" / down.name)

    def set_size(self, path: str, size: int) -> None:
        (self._folder(self.number_of(path)) / "size").write_text(f"{size // 512}\n")

    # -- what the backend sees -----------------------------------------------------
    def stat(self, path: str):
        found = os.stat(str(self.base) + path)          # FileNotFoundError and all
        number = self.numbers.get(found.st_ino)
        if number is None:
            return found
        return SimpleNamespace(st_mode=stat.S_IFBLK | 0o660,
                               st_rdev=os.makedev(number.major, number.minor))

    def number_of(self, path: str) -> DeviceNumber:
        return self.numbers[os.stat(str(self.base) + path).st_ino]

    def backend(self, prefixes=("/dev/",), devices=()) -> BlockBackend:
        return BlockBackend(list(prefixes), list(devices), host=self.host)

    # -- plumbing ------------------------------------------------------------------
    def _folder(self, number: DeviceNumber) -> Path:
        return Path(os.path.realpath(self.base / "sys/dev/block" / str(number)))

    def _write_proc(self) -> None:
        (self.base / "proc/self/mountinfo").write_text("\n".join(self._mountinfo) + "\n")
        (self.base / "proc/swaps").write_text("\n".join(self._swaps) + "\n")
