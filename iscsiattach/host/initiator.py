"""This host's iSCSI initiator name, read from open-iscsi's own file.

Read here, in Python, rather than through os-brick: os-brick runs `cat`
(through its root helper) for it, one more program per attach; our host
side runs as root and needs no helper to read a file.
"""
from __future__ import annotations

INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"


def local_initiator(path: str | None = None) -> str | None:
    """The IQN in ``InitiatorName=`` of open-iscsi's file, or None."""
    try:
        with open(path or INITIATOR_FILE) as f:
            for line in f:
                if line.startswith("InitiatorName="):
                    return line.split("=", 1)[1].strip() or None
    except OSError:
        pass
    return None
