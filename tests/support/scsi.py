"""SCSI commands sent straight to a LUN with the SG_IO ioctl (test-only).

The host's block layer keeps its own read-only flag and refuses writes
before any command is built, so a write refused "by the host" says nothing
about the target. SG_IO on the disk's block device skips that layer (root
has CAP_SYS_RAWIO, so a WRITE is allowed on a read-only fd) and returns the
target's own SCSI status and sense data, which is what a test asserts.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
from dataclasses import dataclass

SG_IO = 0x2285
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
GOOD = 0x00
CHECK_CONDITION = 0x02
DATA_PROTECT = 0x7
ASC_WRITE_PROTECTED = 0x27
SENSE_KEYS = ("NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
              "HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
              "BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
              "RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED")


class SgIoHdr(ctypes.Structure):
    """struct sg_io_hdr from <scsi/sg.h>."""
    _fields_ = [("interface_id", ctypes.c_int), ("dxfer_direction", ctypes.c_int),
                ("cmd_len", ctypes.c_ubyte), ("mx_sb_len", ctypes.c_ubyte),
                ("iovec_count", ctypes.c_ushort), ("dxfer_len", ctypes.c_uint),
                ("dxferp", ctypes.c_void_p), ("cmdp", ctypes.c_void_p),
                ("sbp", ctypes.c_void_p), ("timeout", ctypes.c_uint),
                ("flags", ctypes.c_uint), ("pack_id", ctypes.c_int),
                ("usr_ptr", ctypes.c_void_p), ("status", ctypes.c_ubyte),
                ("masked_status", ctypes.c_ubyte), ("msg_status", ctypes.c_ubyte),
                ("sb_len_wr", ctypes.c_ubyte), ("host_status", ctypes.c_ushort),
                ("driver_status", ctypes.c_ushort), ("resid", ctypes.c_int),
                ("duration", ctypes.c_uint), ("info", ctypes.c_uint)]


@dataclass(frozen=True)
class Sense:
    key: int
    asc: int
    ascq: int

    def __str__(self) -> str:
        return f"{SENSE_KEYS[self.key]} (ASC 0x{self.asc:02x}, ASCQ 0x{self.ascq:02x})"


@dataclass(frozen=True)
class Outcome:
    """What the target answered: SCSI status, its sense if any, and the
    transport's own statuses (non-zero when the command never got an answer)."""
    status: int
    sense: Sense | None
    host_status: int
    driver_status: int
    data: bytes = b""


def parse_sense(buf: bytes) -> Sense | None:
    """Sense key, ASC and ASCQ from fixed (0x70/0x71) or descriptor
    (0x72/0x73) format sense data; None for anything else."""
    if len(buf) < 4:
        return None
    code = buf[0] & 0x7F
    if code in (0x72, 0x73):
        return Sense(buf[1] & 0x0F, buf[2], buf[3])
    if code in (0x70, 0x71) and len(buf) >= 14:
        return Sense(buf[2] & 0x0F, buf[12], buf[13])
    return None


def _cdb10(opcode: int, lba: int, blocks: int) -> bytes:
    return bytes([opcode, 0, *lba.to_bytes(4, "big"), 0, *blocks.to_bytes(2, "big"), 0])


def _sg_io(dev: str, cdb: bytes, direction: int, data: bytearray) -> Outcome:
    sense = ctypes.create_string_buffer(64)
    cmd = ctypes.create_string_buffer(cdb, len(cdb))
    buf = (ctypes.c_char * len(data)).from_buffer(data)
    hdr = SgIoHdr(interface_id=ord("S"), dxfer_direction=direction, cmd_len=len(cdb),
                  mx_sb_len=len(sense), dxfer_len=len(data),
                  dxferp=ctypes.addressof(buf), cmdp=ctypes.addressof(cmd),
                  sbp=ctypes.addressof(sense), timeout=60_000)
    fd = os.open(dev, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, SG_IO, hdr)
    finally:
        os.close(fd)
    got = parse_sense(sense.raw[:hdr.sb_len_wr]) if hdr.sb_len_wr else None
    return Outcome(hdr.status, got, hdr.host_status, hdr.driver_status, bytes(data))


def write10(dev: str, lba: int, payload: bytes, block_size: int = 512) -> Outcome:
    """WRITE(10) of ``payload`` (whole blocks) at ``lba``, past the host's
    read-only flag and its page cache."""
    assert len(payload) % block_size == 0
    return _sg_io(dev, _cdb10(0x2A, lba, len(payload) // block_size), SG_DXFER_TO_DEV,
                  bytearray(payload))


def read10(dev: str, lba: int, blocks: int, block_size: int = 512) -> Outcome:
    """READ(10) from the LUN itself: what the target holds, not a cached copy."""
    return _sg_io(dev, _cdb10(0x28, lba, blocks), SG_DXFER_FROM_DEV,
                  bytearray(blocks * block_size))


def logical_block_size(dev: str) -> int:
    return int(open(f"/sys/block/{os.path.basename(dev)}/queue/logical_block_size").read())


def refused_write(dev: str, lba: int = 0) -> tuple[Outcome, bytes]:
    """Try one WRITE(10) of random data at ``lba``; return the target's
    answer and what the LUN holds there afterwards (read with READ(10))."""
    size = logical_block_size(dev)
    answer = write10(dev, lba, os.urandom(size), size)
    after = read10(dev, lba, 1, size)
    assert after.status == GOOD and after.host_status == 0, after
    return answer, after.data


def is_write_protected(answer: Outcome) -> bool:
    """The target's own refusal: CHECK CONDITION, DATA PROTECT, WRITE PROTECTED."""
    return (answer.host_status == 0 and answer.status == CHECK_CONDITION
            and answer.sense is not None and answer.sense.key == DATA_PROTECT
            and answer.sense.asc == ASC_WRITE_PROTECTED)
