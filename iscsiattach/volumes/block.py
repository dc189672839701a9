"""Existing block devices registered as volumes, exported through iblock.

This backend never creates, wipes or writes a device: ``create`` checks and
registers one, ``delete`` forgets it. Its size is read from sysfs, so not
even an open of the device is needed.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from iscsiattach.exception import InvalidInput, NotFound
from iscsiattach.target.model import Backing, BackingKind, validate_volume_id
from iscsiattach.volumes.base import GIB, Provisioned, VolumeBackend, validate_size_gib
from iscsiattach.exception import VolumeBackendError

SECTOR = 512    # sysfs reports a device's size in 512-byte sectors, always


class NotABlockDevice(InvalidInput):
    """The path exists but is no block device (after following symlinks)."""


def _device_size(path: str) -> int:
    """Size in bytes of the block device at ``path`` (symlinks followed).

    FileNotFoundError if nothing is there, NotABlockDevice if something else is.
    """
    found = os.stat(path)
    if not stat.S_ISBLK(found.st_mode):
        raise NotABlockDevice(f"{path} is not a block device")
    major, minor = os.major(found.st_rdev), os.minor(found.st_rdev)
    with open(f"/sys/dev/block/{major}:{minor}/size", encoding="ascii") as f:
        return int(f.read().strip()) * SECTOR


class BlockBackend(VolumeBackend):
    """Devices under ``allowed_prefixes``, stored by the path given (a stable
    /dev/disk/by-id/... link stays one)."""

    name = "block"

    def __init__(self, allowed_prefixes: Sequence[str] = ("/dev/",)) -> None:
        prefixes = [allowed_prefixes] if isinstance(allowed_prefixes, str) else allowed_prefixes
        if not prefixes or any(not isinstance(p, str) or not p.startswith("/")
                               or ".." in p.split("/") for p in prefixes):
            raise InvalidInput(f"invalid block device prefixes {allowed_prefixes!r}: "
                               "expected absolute directories such as /dev/")
        # A prefix is a directory: /dev/disk must not admit /dev/diskette.
        self.allowed_prefixes = tuple(p.rstrip("/") + "/" for p in prefixes)

    def location_for(self, volume_id: str, source: str | None = None) -> str:
        if source is None:
            raise InvalidInput("the block backend registers an existing device: "
                               "source (its path) is required")
        return self._check_path(source)

    def create(self, volume_id: str, size_gib: int, source: str | None = None) -> Provisioned:
        validate_volume_id(volume_id)
        validate_size_gib(size_gib, max_gib=None)
        if source is None:
            raise InvalidInput("the block backend registers an existing device: "
                               "source (its path) is required")
        path = self._check_path(source)
        try:
            size = self._size(path)
        except FileNotFoundError:
            raise InvalidInput(f"no device at {path}") from None
        if size_gib * GIB > size:
            raise InvalidInput(f"{path} holds {_gib(size)}, less than the {size_gib} GiB asked")
        return _provisioned(path, size)

    def extend(self, volume_id: str, location: str, new_size_gib: int) -> Provisioned:
        validate_volume_id(volume_id)
        path = self._check_path(location)
        validate_size_gib(new_size_gib, max_gib=None)
        try:
            size = self._size(path)
        except FileNotFoundError:
            raise NotFound(f"device {path} does not exist") from None
        if new_size_gib * GIB > size:
            raise InvalidInput(f"cannot extend {path} to {new_size_gib} GiB: the device holds "
                               f"{_gib(size)}; grow the device itself first")
        return _provisioned(path, size)

    def delete(self, volume_id: str, location: str) -> None:
        """Forget the device: its data is its owner's and stays untouched."""
        validate_volume_id(volume_id)

    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        validate_volume_id(volume_id)
        path = self._check_path(location)
        try:
            return _provisioned(path, self._size(path))
        except (FileNotFoundError, NotABlockDevice):
            return None

    def _check_path(self, path: object) -> str:
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            raise InvalidInput(f"invalid device path {path!r}: expected an absolute path "
                               "without '..'")
        if not path.startswith(self.allowed_prefixes):
            raise InvalidInput(f"device path {path} is outside the allowed prefixes "
                               f"({', '.join(self.allowed_prefixes)})")
        Backing(BackingKind.BLOCK, path)       # the target's own path rules
        return path

    @staticmethod
    def _size(path: str) -> int:
        try:
            return _device_size(path)
        except (FileNotFoundError, NotABlockDevice):
            raise
        except NotADirectoryError:
            # "/dev/null/x": a path through a non-directory names no device.
            raise FileNotFoundError(path) from None
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            raise VolumeBackendError(f"cannot read the size of {path}: {reason}") from None


def _provisioned(path: str, size: int) -> Provisioned:
    return Provisioned(path, Backing(BackingKind.BLOCK, path), size // GIB)


def _gib(size: int) -> str:
    return f"{size // GIB} GiB" if size % GIB == 0 else f"{size / GIB:.2f} GiB"
