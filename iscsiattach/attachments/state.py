"""Statuses and the rules that derive a volume's status from its attachments.

The members are ``StrEnum``: each is its own string, so the store keeps, and
the API shows, exactly the strings Cinder uses ("in-use", "error_attaching").
"""
from __future__ import annotations

import enum
from collections.abc import Iterable


class VolumeStatus(enum.StrEnum):
    """A volume's status (Cinder's names)."""
    CREATING = "creating"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    EXTENDING = "extending"
    ERROR = "error"
    DELETING = "deleting"


class AttachmentStatus(enum.StrEnum):
    """An attachment's status (Cinder's names)."""
    RESERVED = "reserved"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHED = "detached"
    ERROR_ATTACHING = "error_attaching"
    ERROR_DETACHING = "error_detaching"


# The short names the services use.
CREATING, AVAILABLE, RESERVED = VolumeStatus.CREATING, VolumeStatus.AVAILABLE, VolumeStatus.RESERVED
ATTACHING, IN_USE, DETACHING = VolumeStatus.ATTACHING, VolumeStatus.IN_USE, VolumeStatus.DETACHING
EXTENDING, ERROR, DELETING = VolumeStatus.EXTENDING, VolumeStatus.ERROR, VolumeStatus.DELETING

A_RESERVED, A_ATTACHING = AttachmentStatus.RESERVED, AttachmentStatus.ATTACHING
A_ATTACHED, A_DETACHED = AttachmentStatus.ATTACHED, AttachmentStatus.DETACHED
A_ERROR_ATTACHING = AttachmentStatus.ERROR_ATTACHING
A_ERROR_DETACHING = AttachmentStatus.ERROR_DETACHING

# Attachments whose initiator must be let in: connected, or on the way.
CONNECTED = (A_ATTACHING, A_ATTACHED)
# Attachments that still hold the volume.
LIVE = (A_RESERVED, A_ATTACHING, A_ATTACHED, A_ERROR_ATTACHING, A_ERROR_DETACHING)
# Volume statuses an attachment's change may move.
ATTACHABLE = (AVAILABLE, RESERVED, ATTACHING, IN_USE, DETACHING)


def volume_status_for(attachment_statuses: Iterable[str]) -> VolumeStatus:
    """What a volume's status is, given its attachments' statuses."""
    live = set(attachment_statuses) & set(LIVE)
    if A_ATTACHED in live:
        return IN_USE
    if A_ATTACHING in live:
        return ATTACHING
    if live:
        return RESERVED
    return AVAILABLE
