"""Volumes as sparse files in one directory, exported through fileio."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Mapping

from iscsiattach import failpoints
from iscsiattach.exception import Conflict, InvalidInput, NotFound, VolumeBackendError
from iscsiattach.model import Backing, BackingKind, validate_volume_id, volume_name
from iscsiattach.volumes.base import (
    GIB,
    Provisioned,
    VolumeBackend,
    require_location,
    validate_size_gib,
)

# How the target does a file volume's I/O ([volumes] file_io).
FILE_IO = ("auto", "direct", "page-cache")


class FileBackend(VolumeBackend):
    """``<directory>/volume-<uuid>.img``, sparse, 0600 in a 0700 directory.

    ``file_io``: "direct" (the target's asynchronous fileio, which is direct
    I/O: the node's page cache holds no copy), "page-cache" (fileio through
    the page cache, as targetcli's default), or "auto": direct where the
    directory's filesystem has direct I/O, the page cache where it has not
    (tmpfs before Linux 6.6, what test VMs use). Found once, by opening a
    file there with O_DIRECT; "direct" on a filesystem without it refuses
    volume-create, so a volume is never made that no attach could serve.
    """

    name = "file"
    backing_kind = BackingKind.FILE

    def __init__(self, directory: str, file_io: str = "auto") -> None:
        if not isinstance(directory, str) or not os.path.isabs(directory):
            raise InvalidInput(f"invalid volume directory {directory!r}: expected an "
                               "absolute path")
        if file_io not in FILE_IO:
            raise InvalidInput(f"invalid file_io {file_io!r}: expected one of "
                               f"{', '.join(FILE_IO)}")
        self.directory = os.path.normpath(directory)
        self.file_io = file_io
        self._has_direct_io: bool | None = None      # the directory's filesystem, once known

    def backing(self, location: str, size_gib: int) -> Backing:
        return Backing(BackingKind.FILE, location, size_gib * GIB,
                       direct_io=self.direct_io())

    def direct_io(self) -> bool:
        """Whether volumes here are exported with direct I/O."""
        if self.file_io == "page-cache":
            return False
        if self.file_io == "direct":
            return True
        return self._directory_has_direct_io()

    def _directory_has_direct_io(self) -> bool:
        if self._has_direct_io is None:
            self._has_direct_io = self._probe_direct_io()
        return self._has_direct_io

    def _probe_direct_io(self) -> bool:
        self._ensure_directory()
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-probe-")
        except OSError as e:
            raise VolumeBackendError(f"cannot create a file in {self.directory}: "
                                     f"{e.strerror}") from None
        os.close(fd)
        try:
            os.close(os.open(tmp, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC))
            return True
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False
            raise VolumeBackendError(f"cannot open {tmp}: {e.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _check_servable(self) -> None:
        if self.file_io == "direct" and not self._directory_has_direct_io():
            raise InvalidInput(f"{self.directory} is on a filesystem without direct I/O "
                               "(such as tmpfs): [volumes] file_io = direct cannot serve "
                               "a volume there; use auto or page-cache")

    def location_for(self, volume_id: str, source: str | None = None) -> str:
        return self.path(volume_id)

    def path(self, volume_id: str) -> str:
        return os.path.join(self.directory, volume_name(validate_volume_id(volume_id)) + ".img")

    def create(self, volume_id: str, size_gib: int, source: str | None = None,
               others: Mapping[str, str] | None = None) -> Provisioned:
        path = self.path(volume_id)
        size = validate_size_gib(size_gib, max_gib=None) * GIB
        if source is not None:
            raise InvalidInput("the file backend makes new volumes: source must not be given")
        found = self._stat(path)
        if found is None:
            self._ensure_directory()
            self._check_servable()          # before anything is made
            if self._create_sparse(path, size):
                return self._provisioned(path, size)
            found = self._stat(path)     # another create won the race
            if found is None:
                raise Conflict(f"{path} was created and removed meanwhile: retry")
        if found.st_size != size:
            raise Conflict(f"{path} already exists with another size "
                           f"({_describe(found)}, asked {size_gib} GiB)")
        return self._provisioned(path, size)

    def extend(self, volume_id: str, location: str, new_size_gib: int,
               others: Mapping[str, str] | None = None) -> Provisioned:
        path = require_location(location, self.path(volume_id))
        new_size = validate_size_gib(new_size_gib, max_gib=None) * GIB
        found = self._stat(path)
        if found is None:
            raise NotFound(f"volume file {path} does not exist")
        if new_size < found.st_size:
            raise InvalidInput(f"cannot shrink {path} from {_describe(found)} to "
                               f"{new_size_gib} GiB: volumes only grow")
        if new_size > found.st_size:
            self._grow(path, new_size)
        return self._provisioned(path, new_size)

    def delete(self, volume_id: str, location: str) -> None:
        path = require_location(location, self.path(volume_id))
        self._remove_temporary_files(path)
        try:
            # Unlinking frees the blocks; a new volume file starts as a hole,
            # so no data of this one can be read through another.
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise VolumeBackendError(f"cannot delete {path}: {e.strerror}") from None
        self._sync_directory()

    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        path = require_location(location, self.path(volume_id))
        found = self._stat(path)
        return None if found is None else self._provisioned(path, found.st_size)

    def _provisioned(self, path: str, size: int) -> Provisioned:
        return Provisioned(path, Backing(BackingKind.FILE, path, size,
                                         direct_io=self.direct_io()), size // GIB)

    def _stat(self, path: str) -> os.stat_result | None:
        """The volume file's status, None if absent; anything but a regular
        file (a symlink, a directory) is never ours to use."""
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise VolumeBackendError(f"cannot inspect {path}: {e.strerror}") from None
        if not stat.S_ISREG(found.st_mode):
            raise Conflict(f"{path} exists and is not a regular file")
        return found

    def _ensure_directory(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o700)
        except FileExistsError:
            return       # an existing directory keeps the mode its owner chose
        except OSError as e:
            raise VolumeBackendError(f"cannot create {self.directory}: {e.strerror}") from None
        os.chmod(self.directory, 0o700)     # makedirs' mode is subject to the umask

    def _create_sparse(self, path: str, size: int) -> bool:
        """Make the file whole or not at all; False if ``path`` appeared meanwhile.

        The file is built under a temporary name and then hard-linked into
        place: unlike rename, link never replaces a file that a concurrent
        create put there first.
        """
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_temporary_prefix(path),
                                       suffix=".img")
        except OSError as e:
            raise VolumeBackendError(f"cannot create a file in {self.directory}: "
                                     f"{e.strerror}") from None
        try:
            failpoints.point("file_backend.after_temp_file")
            with os.fdopen(fd, "wb") as f:        # mkstemp makes it 0600
                f.truncate(size)                   # a hole: no block is written
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:
            raise VolumeBackendError(f"cannot create {path}: {e.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._sync_directory()
        return True

    def _remove_temporary_files(self, path: str) -> None:
        """Drop what a create of this volume cut short by a crash left behind."""
        prefix = _temporary_prefix(path)
        try:
            names = [e.name for e in os.scandir(self.directory)
                     if e.name.startswith(prefix) and e.name.endswith(".img")]
        except FileNotFoundError:
            return
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))

    def _grow(self, path: str, size: int) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise VolumeBackendError(f"cannot grow {path}: {e.strerror}") from None

    def _sync_directory(self) -> None:
        """Make a name's creation or removal durable, not only the data."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise VolumeBackendError(f"cannot sync {self.directory}: {e.strerror}") from None


def _describe(found: os.stat_result) -> str:
    if found.st_size % GIB == 0:
        return f"{found.st_size // GIB} GiB"
    return f"{found.st_size} bytes"


def _temporary_prefix(path: str) -> str:
    """Temporary files are named after their volume: after a crash between
    making one and linking it into place, delete() of that volume finds it."""
    return ".tmp-" + os.path.basename(path).removesuffix(".img") + "-"
