"""The one exception tree of iscsiattach.

Every error the project raises on purpose is an ``IscsiAttachError``. Lower
layers raise the most specific class and never think about transports; the
edges (HTTP API, CLI) translate the classes once:

    IscsiAttachError            anything we raise on purpose
    +-- InvalidInput            the caller sent something malformed   (400 / exit 2)
    +-- NotFound                the named thing does not exist        (404 / exit 1)
    +-- Conflict                valid, but not in the current state   (409 / exit 1)
    +-- NotAcceptable           an API microversion we do not serve   (406 / exit 2)
    +-- TargetError             the kernel target refused or failed   (500 / exit 1)
    |   +-- TargetUnavailable   no LIO here (configfs or modules missing)
    +-- VolumeBackendError      lvm2 / the filesystem / sysfs failed  (500 / exit 1)

Messages are written for the person reading them and never contain a
secret: code that handles secrets builds its messages from names only.
"""
from __future__ import annotations


class IscsiAttachError(Exception):
    """Root of every error iscsiattach raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(IscsiAttachError):
    """The request is malformed; nothing was changed."""


class NotFound(IscsiAttachError):
    """The named object does not exist."""


class Conflict(IscsiAttachError):
    """The request is valid but conflicts with the current state."""


class NotAcceptable(IscsiAttachError):
    """A well-formed request for something this server does not offer
    (an API microversion outside the supported range)."""


class TargetError(IscsiAttachError):
    """The kernel target (LIO) refused an operation or failed."""


class TargetUnavailable(TargetError):
    """LIO cannot be used on this machine (configfs or modules missing)."""


class VolumeBackendError(IscsiAttachError):
    """The storage layer (lvm2, the filesystem, sysfs) refused or failed.

    The message is one line: what was attempted and the tool's own reason.
    """
