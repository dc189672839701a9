"""Volumes as LVM logical volumes, thick or thin, exported through iblock.

Everything goes through the lvm2 command-line tools with argument lists; a
failing tool becomes a one-line VolumeBackendError carrying lvm's reason.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

from iscsiattach.exception import Conflict, InvalidInput, NotFound, VolumeBackendError
from iscsiattach.model import Backing, BackingKind, validate_volume_id, volume_name
from iscsiattach.volumes.base import (
    GIB,
    Provisioned,
    VolumeBackend,
    require_location,
    validate_size_gib,
)

Runner = Callable[..., subprocess.CompletedProcess]

# lvm(8) "VALID NAMES": these characters, not starting with '-', not . or ..
_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*")
_LVM_NAME_MAX = 127
# What lvs/lvremove print for a missing LV (stable since lvm2 2.02; LC_ALL=C).
_LV_MISSING = "Failed to find logical volume"


def validate_lvm_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _LVM_NAME.fullmatch(name) \
            or name in (".", "..") or len(name) > _LVM_NAME_MAX:
        raise InvalidInput(f"invalid {what} name {name!r}: expected 1-{_LVM_NAME_MAX} of "
                           "A-Z a-z 0-9 + _ . -, not starting with '-'")
    return name


class LvmBackend(VolumeBackend):
    """``/dev/<vg>/volume-<uuid>``: thick in ``vg``, or thin in ``vg/thin_pool``.

    Data of a deleted thick LV is discarded first (blkdiscard, best effort):
    ``-Zy`` zeroes only the first 4 KiB of a new LV, so without a discard a
    later LV laid over the same extents could read this one's bytes where
    the device does not discard. Thin volumes need no discard: the pool gives
    their chunks back, and a pool zeroes chunks it hands out anew (lvm's
    default, thin_pool_zero = 1).
    """

    name = "lvm"

    def __init__(self, vg: str, thin_pool: str | None = None, run: Runner = subprocess.run) -> None:
        self.vg = validate_lvm_name(vg, "volume group")
        self.thin_pool = None if thin_pool is None else validate_lvm_name(thin_pool, "thin pool")
        self._runner = run

    def lv_name(self, volume_id: str) -> str:
        return volume_name(validate_volume_id(volume_id))

    def location_for(self, volume_id: str, source: str | None = None) -> str:
        return self.path(volume_id)

    def path(self, volume_id: str) -> str:
        return f"/dev/{self.vg}/{self.lv_name(volume_id)}"

    def create(self, volume_id: str, size_gib: int, source: str | None = None,
               others: Mapping[str, str] | None = None) -> Provisioned:
        lv = self.lv_name(volume_id)
        validate_size_gib(size_gib, max_gib=None)
        if source is not None:
            raise InvalidInput("the lvm backend makes new volumes: source must not be given")
        size = self._size(lv)
        if size is None:
            size = self._lvcreate(lv, size_gib)
        # lvm rounds up to whole extents, so compare whole GiB, not bytes.
        if size // GIB != size_gib:
            raise Conflict(f"logical volume {self.vg}/{lv} already exists with "
                           f"{_gib(size)}, asked {size_gib} GiB")
        return self._provisioned(volume_id, size_gib)

    def extend(self, volume_id: str, location: str, new_size_gib: int,
               others: Mapping[str, str] | None = None) -> Provisioned:
        lv = self.lv_name(volume_id)
        require_location(location, self.path(volume_id))
        validate_size_gib(new_size_gib, max_gib=None)
        size = self._size(lv)
        if size is None:
            raise NotFound(f"logical volume {self.vg}/{lv} does not exist")
        if new_size_gib < size // GIB:
            raise InvalidInput(f"cannot shrink {self.vg}/{lv} from {_gib(size)} to "
                               f"{new_size_gib} GiB: volumes only grow")
        if new_size_gib > size // GIB:
            self._run(["lvextend", "-L", f"{new_size_gib}g", f"{self.vg}/{lv}"], lv)
        return self._provisioned(volume_id, new_size_gib)

    def delete(self, volume_id: str, location: str) -> None:
        lv = self.lv_name(volume_id)
        require_location(location, self.path(volume_id))
        if self._size(lv) is None:
            return
        if self.thin_pool is None:
            self._discard(location)
        done = self._call(["lvremove", "-y", f"{self.vg}/{lv}"])
        if done.returncode != 0 and _LV_MISSING not in done.stderr:
            raise _failure("lvremove", f"{self.vg}/{lv}", done)

    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        lv = self.lv_name(volume_id)
        require_location(location, self.path(volume_id))
        size = self._size(lv)
        return None if size is None else self._provisioned(volume_id, size // GIB)

    def _provisioned(self, volume_id: str, size_gib: int) -> Provisioned:
        path = self.path(volume_id)
        return Provisioned(path, Backing(BackingKind.BLOCK, path), size_gib)

    def _lvcreate(self, lv: str, size_gib: int) -> int:
        """Create the LV; its size in bytes. A concurrent create of the same
        volume may win: then lvcreate fails and the LV it made counts."""
        if self.thin_pool is None:
            argv = ["lvcreate", "-y", "-Wy", "-Zy", "-n", lv, "-L", f"{size_gib}g", self.vg]
        else:
            argv = ["lvcreate", "-y", "-n", lv, "-V", f"{size_gib}g",
                    "--thinpool", self.thin_pool, self.vg]
        try:
            self._run(argv, lv)
        except VolumeBackendError:
            size = self._size(lv)
            if size is None:
                raise
            return size
        return size_gib * GIB

    def _size(self, lv: str) -> int | None:
        """The LV's size in bytes, None if it does not exist."""
        target = f"{self.vg}/{lv}"
        done = self._call(["lvs", "--noheadings", "--units", "b", "--nosuffix",
                           "-o", "lv_size", target])
        if done.returncode != 0:
            if _LV_MISSING in done.stderr:
                return None
            raise _failure("lvs", target, done)
        try:
            return int(done.stdout.strip())
        except ValueError:
            raise VolumeBackendError(f"lvs printed no size for {target}: "
                                     f"{done.stdout.strip()!r}") from None

    def _discard(self, path: str) -> None:
        # Best effort: many devices have no discard, and an LV in use (still
        # exported) refuses blkdiscard's exclusive open; lvremove then refuses too.
        try:
            self._call(["blkdiscard", path])
        except VolumeBackendError:
            pass

    def _run(self, argv: Sequence[str], lv: str) -> subprocess.CompletedProcess:
        done = self._call(argv)
        if done.returncode != 0:
            raise _failure(argv[0], f"{self.vg}/{lv}", done)
        return done

    def _call(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        # C locale: lvm's messages are matched above. No fd-leak warnings:
        # they would bury lvm's own reason.
        env = {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}
        try:
            return self._runner(list(argv), capture_output=True, text=True, check=False,
                                stdin=subprocess.DEVNULL, env=env)
        except FileNotFoundError:
            raise VolumeBackendError(f"{argv[0]} not found: is lvm2 installed?") from None
        except OSError as e:
            raise VolumeBackendError(f"cannot run {argv[0]}: {e.strerror}") from None


def _failure(tool: str, target: str, done: subprocess.CompletedProcess) -> VolumeBackendError:
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit status {done.returncode}"
    return VolumeBackendError(f"{tool} failed for {target}: {reason}")


def _gib(size: int) -> str:
    return f"{size // GIB} GiB" if size % GIB == 0 else f"{size} bytes"
