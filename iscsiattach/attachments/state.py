"""Statuses and the rules that derive a volume's status from its attachments."""
from __future__ import annotations

from collections.abc import Iterable

# Volume statuses (Cinder's names).
CREATING, AVAILABLE, RESERVED, ATTACHING = "creating", "available", "reserved", "attaching"
IN_USE, DETACHING, EXTENDING = "in-use", "detaching", "extending"
ERROR, DELETING = "error", "deleting"

# Attachment statuses.
A_RESERVED, A_ATTACHING, A_ATTACHED = "reserved", "attaching", "attached"
A_DETACHED, A_ERROR_ATTACHING, A_ERROR_DETACHING = "detached", "error_attaching", "error_detaching"

# Attachments whose initiator must be let in: connected, or on the way.
CONNECTED = (A_ATTACHING, A_ATTACHED)
# Attachments that still hold the volume.
LIVE = (A_RESERVED, A_ATTACHING, A_ATTACHED, A_ERROR_ATTACHING, A_ERROR_DETACHING)
# Volume statuses an attachment's change may move.
ATTACHABLE = (AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING)


def volume_status_for(attachment_statuses: Iterable[str]) -> str:
    """What a volume's status is, given its attachments' statuses."""
    live = set(attachment_statuses) & set(LIVE)
    if A_ATTACHED in live:
        return IN_USE
    if A_ATTACHING in live:
        return ATTACHING
    if live:
        return RESERVED
    return AVAILABLE
