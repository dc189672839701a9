"""The one exception tree of iscsiattach, and how it crosses the edges.

Every exception the project defines derives from ``IscsiAttachError``. Lower
layers raise the most specific class and never think about transports. The
edges translate a class once, through the one table ``EDGES`` below:

- the HTTP API (``api/faults.py``, ``to_fault``): class -> HTTP status, in
  Cinder's fault bodies;
- the CLI (``cli/main.py``) and the daemon's start (``cmd/daemon.py``):
  class -> exit status;
- the CLI's client side turns a daemon's error answer back into a class
  (``error_for_status``, used only by ``cli/client.Client.checked``), so the
  same table decides the exit status of a refused request.

The tree, with (HTTP status / exit status) and when each is raised::

    IscsiAttachError                anything we raise on purpose          (500 / 1)
    |
    |   -- what the caller asked for --
    +-- InvalidInput                the caller sent something malformed:  (400 / 2)
    |   |                           a request, a command line, a config value;
    |   |                           nothing was changed
    |   +-- NotABlockDevice         a path that exists is no block device (400 / 2)
    +-- NotFound                    the named thing does not exist        (404 / 1)
    +-- Conflict                    valid, but not in the current state   (409 / 1)
    +-- NotAcceptable               an API microversion we do not serve   (406 / 1)
    +-- HttpError                   the API layer's own refusal: 401,  (its own / 1)
    |                               404 for an unknown route, 405, 408,
    |                               413, 414, 431, 503 (queue full)
    |
    |   -- the storage node --
    +-- TargetError                 the kernel target refused or failed   (500 / 1)
    |   +-- TargetUnavailable       no LIO here (configfs or modules missing)
    +-- VolumeBackendError          lvm2 / the filesystem / sysfs failed  (500 / 1)
    +-- ListenFailed                the daemon cannot bind or listen on   (500 / 1)
    |                               its API address
    |
    |   -- the host side (iscsiattach attach / detach) --
    +-- StepFailed                  one attach or detach step failed;     (500 / 1)
    |                               the message names the step
    +-- DeviceMismatch              the device found is not the volume   (500 / 1)
    |                               asked for (serial, WWN, size, ro)
    +-- BrickError                  os-brick could not connect or         (500 / 1)
    |                               disconnect, or found no initiator name
    |
    |   -- the command-line client --
    +-- CliError                    the client failed on its side of the  (500 / 1)
    |                               wire: a token file it cannot read, a
    |                               daemon it cannot reach or talk to (TLS,
    |                               timeout, not HTTP), an oversized answer
    +-- DaemonRefused               the daemon answered with an error     (500 / 1)
                                    status that has no class above (401,
                                    413, 500, ...); the message quotes it

Exit status 2 means "the command line or configuration is wrong", as
argparse's own usage errors; everything else that fails is 1. The classes
of the last three sections never reach the HTTP API: their status says only
what ``to_fault`` would answer if one ever did.

Messages are written for the person reading them and never contain a
secret: code that handles secrets builds its messages from names only.
"""
from __future__ import annotations

from typing import NamedTuple

EXIT_FAILURE = 1        # the command or the start failed
EXIT_USAGE = 2          # the command line or the configuration is wrong (as argparse)


class IscsiAttachError(Exception):
    """Root of every error iscsiattach raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(IscsiAttachError):
    """The request is malformed; nothing was changed."""


class NotABlockDevice(InvalidInput):
    """The path exists but is no block device (after following symlinks)."""


class NotFound(IscsiAttachError):
    """The named object does not exist."""


class Conflict(IscsiAttachError):
    """The request is valid but conflicts with the current state."""


class NotAcceptable(IscsiAttachError):
    """A well-formed request for something this server does not offer
    (an API microversion outside the supported range)."""


class HttpError(IscsiAttachError):
    """An HTTP-level refusal made by the API layer itself (401, 405, 413, 415...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TargetError(IscsiAttachError):
    """The kernel target (LIO) refused an operation or failed."""


class TargetUnavailable(TargetError):
    """LIO cannot be used on this machine (configfs or modules missing)."""


class VolumeBackendError(IscsiAttachError):
    """The storage layer (lvm2, the filesystem, sysfs) refused or failed.

    The message is one line: what was attempted and the tool's own reason.
    """


class ListenFailed(IscsiAttachError):
    """The system refused to bind or listen on the API's address (in use,
    not ours to bind, no such address)."""


class StepFailed(IscsiAttachError):
    """One step of attach or detach failed; the message names it."""


class DeviceMismatch(IscsiAttachError):
    """The device at hand is not the volume that was asked for."""


class BrickError(IscsiAttachError):
    """os-brick could not connect or disconnect."""


class CliError(IscsiAttachError):
    """The command-line client failed on its own side of the wire (token
    file, transport, an answer it refuses to read)."""


class DaemonRefused(IscsiAttachError):
    """The daemon answered with an error status no other class stands for."""


class Edge(NamedTuple):
    """How one class crosses the two edges."""
    http_status: int | None     # None: the status the exception carries (HttpError)
    exit_code: int


# The one table. Looked up along the class's MRO, so a subclass that is not
# listed would get its parent's entry; the unit tests require every class
# to be listed all the same, so that adding one means deciding its codes.
EDGES: dict[type[IscsiAttachError], Edge] = {
    IscsiAttachError: Edge(500, EXIT_FAILURE),
    InvalidInput: Edge(400, EXIT_USAGE),
    NotABlockDevice: Edge(400, EXIT_USAGE),
    NotFound: Edge(404, EXIT_FAILURE),
    Conflict: Edge(409, EXIT_FAILURE),
    NotAcceptable: Edge(406, EXIT_FAILURE),
    HttpError: Edge(None, EXIT_FAILURE),
    TargetError: Edge(500, EXIT_FAILURE),
    TargetUnavailable: Edge(500, EXIT_FAILURE),
    VolumeBackendError: Edge(500, EXIT_FAILURE),
    ListenFailed: Edge(500, EXIT_FAILURE),
    StepFailed: Edge(500, EXIT_FAILURE),
    DeviceMismatch: Edge(500, EXIT_FAILURE),
    BrickError: Edge(500, EXIT_FAILURE),
    CliError: Edge(500, EXIT_FAILURE),
    DaemonRefused: Edge(500, EXIT_FAILURE),
}

# The CLI's client side: a daemon's error status back to the class the
# table above maps to it; any other status is DaemonRefused.
ERROR_OF_STATUS: dict[int, type[IscsiAttachError]] = {
    400: InvalidInput, 404: NotFound, 406: NotAcceptable, 409: Conflict}


def edge_of(error: IscsiAttachError) -> Edge:
    """The table's entry for ``error``: its own class's, else its nearest parent's."""
    for cls in type(error).__mro__:
        if cls in EDGES:
            return EDGES[cls]
    raise TypeError(f"{type(error).__name__} is not an IscsiAttachError")


def http_status(error: IscsiAttachError) -> int:
    """The HTTP status the API answers ``error`` with."""
    status = edge_of(error).http_status
    return error.status if isinstance(error, HttpError) else status or 500


def exit_code(error: IscsiAttachError) -> int:
    """The exit status of the CLI, or of the daemon's start, for ``error``."""
    return edge_of(error).exit_code


def error_for_status(status: int, message: str) -> IscsiAttachError:
    """A daemon's error answer (its status, its message as one line) as ours."""
    return ERROR_OF_STATUS.get(status, DaemonRefused)(message)
