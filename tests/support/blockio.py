"""Data written to and read back from a block device with direct I/O, past
every cache, compared by checksum."""
from __future__ import annotations

import hashlib
import mmap
import os


def checksum_io(dev: str, nbytes: int, data: bytes | None = None, offset: int = 0) -> str:
    """Write data (when given) or read nbytes at offset with direct I/O,
    past every cache; the sha256 of what went to or came from the disk."""
    buf = memoryview(mmap.mmap(-1, nbytes))     # page aligned, as O_DIRECT needs
    fd = os.open(dev, (os.O_RDWR if data else os.O_RDONLY) | os.O_DIRECT)
    try:
        if data:
            buf[:] = data
            os.pwritev(fd, [buf], offset)
            os.fsync(fd)
        else:
            os.preadv(fd, [buf], offset)
    finally:
        os.close(fd)
    return hashlib.sha256(buf).hexdigest()


def write_and_read_back(dev: str, nbytes: int = 4 << 20, offset: int = 0) -> bool:
    data = os.urandom(nbytes)
    written = checksum_io(dev, nbytes, data, offset)
    return checksum_io(dev, nbytes, offset=offset) == written == hashlib.sha256(data).hexdigest()
