"""The SG_IO helper the functional tests use to see the target's own answer:
its sense parsing and command blocks (the ioctl itself runs in the VM)."""
from __future__ import annotations

import ctypes

from tests.support import scsi


def test_fixed_format_data_protect():
    buf = bytes([0x70, 0, 0x07, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x27, 0x00, 0, 0, 0, 0])
    sense = scsi.parse_sense(buf)
    assert sense == scsi.Sense(scsi.DATA_PROTECT, 0x27, 0)
    assert str(sense) == "DATA PROTECT (ASC 0x27, ASCQ 0x00)"


def test_descriptor_format_and_deferred_errors():
    assert scsi.parse_sense(bytes([0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0])) == \
        scsi.Sense(5, 0x24, 0)
    assert scsi.parse_sense(bytes([0x71, 0, 0x06] + [0] * 9 + [0x29, 0x01])) == \
        scsi.Sense(6, 0x29, 1)


def test_short_or_unknown_sense_is_none():
    assert scsi.parse_sense(b"") is None
    assert scsi.parse_sense(bytes([0x70, 0, 7])) is None
    assert scsi.parse_sense(bytes([0x00] * 18)) is None


def test_write_protected_needs_status_key_and_asc():
    protect = scsi.Sense(scsi.DATA_PROTECT, scsi.ASC_WRITE_PROTECTED, 0)
    ok = scsi.Outcome(scsi.CHECK_CONDITION, protect, 0, 0)
    assert scsi.is_write_protected(ok)
    assert not scsi.is_write_protected(scsi.Outcome(scsi.GOOD, None, 0, 0))
    assert not scsi.is_write_protected(
        scsi.Outcome(scsi.CHECK_CONDITION, scsi.Sense(scsi.DATA_PROTECT, 0x20, 0), 0, 0))
    # A transport failure (host_status DID_NO_CONNECT) is not a refusal.
    assert not scsi.is_write_protected(scsi.Outcome(scsi.CHECK_CONDITION, protect, 1, 0))


def test_cdb10_and_header_layout():
    assert scsi._cdb10(0x2A, 0x01020304, 2) == bytes(
        [0x2A, 0, 1, 2, 3, 4, 0, 0, 2, 0])
    # struct sg_io_hdr is 88 bytes on LP64 (the kernel checks interface_id
    # and reads the fields at these offsets).
    assert ctypes.sizeof(scsi.SgIoHdr) == 88
    assert scsi.SgIoHdr.status.offset == 64 and scsi.SgIoHdr.sbp.offset == 32
