"""Existing block devices registered as volumes, exported through iblock.

This backend never creates, wipes or writes a device: ``create`` checks and
registers one, ``delete`` forgets it. Its size is read from sysfs, so not
even an open of the device is needed.

Which devices: none until the operator lists some ([volumes]
block_allowed_prefixes, block_allowed_devices), and never one this host
uses: a device that is mounted, a swap area, held by device-mapper, md or
LVM, under the root filesystem, or already registered as another volume
(or a partition of it, or its disk) is refused. Every check is made on the
device a path leads to (major:minor from a stat, symlinks followed), so no
spelling of a path (``/dev/./vda``, ``/dev//vda``, a symlink anywhere) gets
around one.

When: on create (before anything is recorded, and again once the service
has recorded its intent, against the other volumes), on extend, and before
each export is made or repaired (``check_exportable``). The device number is
not stored: it is not stable across reboots (sdb may come back as sdc, and
a /dev/disk/by-id link follows its disk), so the stored path is resolved
again on every use and the device it leads to then is checked again; a
path that now lands on a disk in use or on another volume's is refused.
"""
from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

from iscsiattach.exception import InvalidInput, NotABlockDevice, NotFound, VolumeBackendError
from iscsiattach.model import Backing, BackingKind, validate_volume_id
from iscsiattach.volumes.base import GIB, Provisioned, VolumeBackend, validate_size_gib
from iscsiattach.volumes.devices import DeviceNumber, HostDevices

OPTIONS = "[volumes] block_allowed_prefixes or block_allowed_devices"


class BlockBackend(VolumeBackend):
    """Devices named under ``allowed_prefixes`` or leading to one of
    ``allowed_devices``, stored by the path given with '.' and repeated '/'
    removed (a stable /dev/disk/by-id/... link stays one)."""

    name = "block"
    needs_other_locations = True

    def __init__(self, allowed_prefixes: Sequence[str] | str = (),
                 allowed_devices: Sequence[str] | str = (),
                 host: HostDevices | None = None) -> None:
        self.allowed_prefixes = tuple(_directory(p) for p in _as_list(allowed_prefixes))
        self.allowed_devices = tuple(_absolute(p, "allowed device") for p in
                                     _as_list(allowed_devices))
        if not self.allowed_prefixes and not self.allowed_devices:
            # Safe by default: the API must not reach any disk of this host
            # until the operator says which.
            raise InvalidInput(f"the block backend allows no device: set {OPTIONS} "
                               "(e.g. block_allowed_prefixes = /dev/disk/by-id/)")
        self.host = host or HostDevices()

    # -- the VolumeBackend interface ----------------------------------------------
    def location_for(self, volume_id: str, source: str | None = None) -> str:
        path, _ = self._admit_present(_require_source(source), {})
        return path

    def create(self, volume_id: str, size_gib: int, source: str | None = None,
               others: Mapping[str, str] | None = None) -> Provisioned:
        validate_volume_id(volume_id)
        validate_size_gib(size_gib, max_gib=None)
        path, device = self._admit_present(_require_source(source), others or {})
        size = self._size(path, device)
        if size_gib * GIB > size:
            raise InvalidInput(f"{path} holds {_gib(size)}, less than the {size_gib} GiB asked")
        return _provisioned(path, size)

    def extend(self, volume_id: str, location: str, new_size_gib: int,
               others: Mapping[str, str] | None = None) -> Provisioned:
        validate_volume_id(volume_id)
        validate_size_gib(new_size_gib, max_gib=None)
        try:
            path, device = self._admit(location, others or {})
        except FileNotFoundError as exc:
            raise NotFound(f"device {exc.filename} does not exist") from None
        size = self._size(path, device)
        if new_size_gib * GIB > size:
            raise InvalidInput(f"cannot extend {path} to {new_size_gib} GiB: the device holds "
                               f"{_gib(size)}; grow the device itself first")
        return _provisioned(path, size)

    def check_exportable(self, location: str, others: Mapping[str, str] | None = None) -> None:
        self._admit_present(location, others or {})

    def delete(self, volume_id: str, location: str) -> None:
        """Forget the device: its data is its owner's and stays untouched."""
        validate_volume_id(volume_id)

    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        """What the stored path leads to now, if it is an allowed block device.
        Whether that device is in use is checked where it is used: before
        an export and an extend."""
        validate_volume_id(volume_id)
        try:
            path, device = self._resolve_allowed(location)
        except (FileNotFoundError, NotABlockDevice):
            return None
        return _provisioned(path, self._size(path, device))

    # -- the checks -------------------------------------------------------------------
    def _admit_present(self, source: object,
                       others: Mapping[str, str]) -> tuple[str, DeviceNumber]:
        try:
            return self._admit(source, others)
        except FileNotFoundError as exc:
            raise InvalidInput(f"no device at {exc.filename}") from None

    def _admit(self, source: object, others: Mapping[str, str]) -> tuple[str, DeviceNumber]:
        """The normalized path and the device it leads to, if that device
        may be registered or exported now; else the reason, as InvalidInput
        (FileNotFoundError when nothing is there)."""
        path, device = self._resolve_allowed(source)
        self._refuse_if_in_use(path, device)
        self._refuse_if_registered(path, device, others)
        return path, device

    def _resolve_allowed(self, source: object) -> tuple[str, DeviceNumber]:
        """The normalized path and its device, if the operator allows it.

        FileNotFoundError (filename: the path) if nothing is there,
        NotABlockDevice if something else is. Whether a path exists is
        told only inside what is allowed: elsewhere this is no probe.
        """
        path = _absolute(source, "device path")
        Backing(BackingKind.BLOCK, path)       # the target's own path rules
        device: DeviceNumber | None = None
        failure: Exception | None = None
        try:
            device = self.host.resolve(path)
        except (FileNotFoundError, NotADirectoryError):
            # "/dev/null/x": a path through a non-directory names no device.
            failure = FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        except NotABlockDevice as exc:
            failure = exc
        except OSError as exc:
            failure = _resolve_error(path, exc)
        except ValueError:          # text the filesystem cannot take (a lone surrogate)
            failure = InvalidInput(f"invalid device path {path!r}")
        self._refuse_if_not_allowed(path, device)
        if failure is not None:
            raise failure
        assert device is not None
        return path, device

    def _refuse_if_not_allowed(self, path: str, device: DeviceNumber | None) -> None:
        if path.startswith(self.allowed_prefixes) or path in self.allowed_devices:
            return
        if device is not None and device in self._allowed_numbers():
            return
        raise InvalidInput(
            f"device path {path} is outside the allowed prefixes "
            f"({', '.join(self.allowed_prefixes) or 'none'}) and is none of the allowed "
            f"devices ({', '.join(self.allowed_devices) or 'none'}); see {OPTIONS}")

    def _allowed_numbers(self) -> set[DeviceNumber]:
        # Resolved on each use: an allowed device may appear after start-up,
        # and a by-id link may lead to another sdX after a reboot.
        found = (self._resolve_or_none(p) for p in self.allowed_devices)
        return {n for n in found if n is not None}

    def _refuse_if_in_use(self, path: str, device: DeviceNumber) -> None:
        """InvalidInput if the host uses the device or bytes it shares (its
        disk, its partitions); the most telling reason first."""
        what = f"{path} (device {device})"
        try:
            if not self.host.known(device):
                # Fail closed: without sysfs nothing below could see a use.
                raise VolumeBackendError(f"cannot check {what}: sysfs does not describe it")
            sharing = self.host.sharing_bytes(device)
            # The whole root disk, any partition of it: never worth the risk.
            if sharing & self.host.root_devices():
                raise InvalidInput(f"{what} is on the root disk: the root filesystem, or "
                                   "what it is built on, is there; it is never a volume")
            for mount in self.host.mounts():
                if mount.device in sharing:
                    raise InvalidInput(f"{what} is in use: {self._which(device, mount.device)} "
                                       f"is mounted at {mount.mount_point}")
            for swap, swap_path in sorted(self.host.swaps().items()):
                if swap in sharing:
                    raise InvalidInput(f"{what} is in use: {self._which(device, swap)} is a "
                                       f"swap area ({swap_path})")
            for part in sorted(sharing):
                holders = self.host.holders(part)
                if holders:
                    raise InvalidInput(f"{what} is in use: {self._which(device, part)} is held "
                                       f"by {', '.join(holders)} (device-mapper, md or LVM)")
        except OSError as exc:
            raise VolumeBackendError(f"cannot check whether {what} is in use: "
                                     f"{exc.strerror or exc}") from None

    def _refuse_if_registered(self, path: str, device: DeviceNumber,
                              others: Mapping[str, str]) -> None:
        """InvalidInput if another volume's stored path leads to the same
        device, or to its disk or one of its partitions, now."""
        if not others:
            return
        sharing = self.host.sharing_bytes(device)
        for volume_id, location in sorted(others.items()):
            other = self._resolve_or_none(location)
            if other is not None and other in sharing:
                raise InvalidInput(f"{path} (device {device}) is already registered: "
                                   f"{self._which(device, other)} is volume {volume_id} "
                                   f"({location})")

    def _which(self, device: DeviceNumber, other: DeviceNumber) -> str:
        """``other`` (one of the devices sharing bytes with ``device``), named
        for a message by how it relates to it."""
        if other == device:
            return "it"
        if self.host.whole_disk(device) == other:
            return f"its disk {other}"
        return f"its partition {other}"

    def _resolve_or_none(self, path: str) -> DeviceNumber | None:
        try:
            return self.host.resolve(path)
        except (OSError, ValueError, NotABlockDevice):
            return None

    def _size(self, path: str, device: DeviceNumber) -> int:
        try:
            return self.host.size(device)
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            raise VolumeBackendError(f"cannot read the size of {path}: {reason}") from None


# -- paths ------------------------------------------------------------------------------
def _as_list(value: Sequence[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _absolute(path: object, what: str) -> str:
    """``path`` with '.' and repeated '/' removed; '..' refused (the kernel
    resolves it after symlinks, so text cannot say where it leads)."""
    if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
        raise InvalidInput(f"invalid {what} {path!r}: expected an absolute path "
                           "without '..'")
    # os.path.normpath would keep a leading "//" (POSIX lets it mean something else).
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def _directory(prefix: object) -> str:
    """A prefix is a directory: /dev/disk must not admit /dev/diskette."""
    if not isinstance(prefix, str) or not prefix.startswith("/") \
            or ".." in prefix.split("/"):
        raise InvalidInput(f"invalid block device prefix {prefix!r}: expected an absolute "
                           "directory such as /dev/disk/by-id/")
    return _absolute(prefix, "prefix").rstrip("/") + "/"


def _require_source(source: str | None) -> str:
    if source is None:
        raise InvalidInput("the block backend registers an existing device: "
                           "source (its path) is required")
    return source


def _resolve_error(path: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidInput(f"cannot resolve {path}: {exc.strerror}")
    return VolumeBackendError(f"cannot resolve {path}: {exc.strerror}")


def _provisioned(path: str, size: int) -> Provisioned:
    return Provisioned(path, Backing(BackingKind.BLOCK, path), size // GIB)


def _gib(size: int) -> str:
    return f"{size // GIB} GiB" if size % GIB == 0 else f"{size / GIB:.2f} GiB"
