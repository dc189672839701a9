"""What the kernel and iscsid logged while one test ran.

A functional test that fails in CI leaves only its report behind (the VM is
gone), so the report of a failed test carries these lines: LIO says why it
refused a login only in the kernel log, iscsid only in its own.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

MAX_LINES = 200


def iscsid_log() -> Path | None:
    """Where tools/vm-guest-prepare sends iscsid's output."""
    results = os.environ.get("ISCSIATTACH_RESULTS")
    if not results:
        return None
    name = os.environ.get("ISCSIATTACH_VM_NAME")
    return Path(results, f"iscsid-{name}.log" if name else "iscsid.log")


class LogWindow:
    """Remembers where both logs ended when it was opened."""

    def __init__(self, iscsid: Path | None) -> None:
        self._iscsid = iscsid
        self._offset = _size(iscsid)
        self._kmsg = _kmsg_at_end()

    def kernel(self) -> str:
        if self._kmsg is None:
            return "(no /dev/kmsg)"
        lines = []
        while True:
            try:
                record = os.read(self._kmsg, 8192)
            except OSError as err:
                if err.errno == errno.EPIPE:      # older records overwritten: go on
                    continue
                break                             # EAGAIN: nothing more
            if not record:
                break
            lines.append(_format_record(record.decode(errors="replace")))
        return _tail(lines)

    def iscsid(self) -> str:
        if self._iscsid is None or not self._iscsid.exists():
            return "(no iscsid log)"
        with open(self._iscsid, "rb") as f:
            f.seek(self._offset)
            return _tail(f.read().decode(errors="replace").splitlines())

    def close(self) -> None:
        if self._kmsg is not None:
            os.close(self._kmsg)
            self._kmsg = None


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _kmsg_at_end() -> int | None:
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def _format_record(record: str) -> str:
    """`6,1234,5678901,-;text` (then dictionary lines) as `[   5.678901] text`."""
    head, _, text = record.partition(";")
    fields = head.split(",")
    usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
    return f"[{usec / 1e6:12.6f}] {text.splitlines()[0] if text else ''}"


def _tail(lines: list[str]) -> str:
    if not lines:
        return "(nothing)"
    cut = len(lines) - MAX_LINES
    return "\n".join(([f"({cut} earlier lines left out)"] if cut > 0 else []) + lines[-MAX_LINES:])
