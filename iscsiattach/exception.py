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

The tree; (HTTP status / exit status) from the table, then who raises it::

    IscsiAttachError              (500 / 1) anything we raise on purpose
    |
    |   -- what the caller asked for --
    +-- InvalidInput              (400 / 2) something malformed: a request, a
    |   |                                   command line, a config value (the
    |   |                                   daemon's start); nothing was changed
    |   +-- NotABlockDevice       (400 / 2) a path that exists is no block
    |                                       device (volumes/devices.py)
    +-- NotFound                  (404 / 1) the named thing does not exist
    +-- Conflict                  (409 / 1) valid, but not in the current state
    +-- NotAcceptable             (406 / 1) an API microversion we do not serve
    |                                       (api/microversion.py)
    +-- HttpError             (its own / 1) the API layer's own refusal (api/):
    |                                       401, 404 for an unknown route, 405,
    |                                       408, 413, 414, 431, 503 (queue full)
    |
    |   -- the storage node --
    +-- TargetError               (500 / 1) the kernel target refused or failed
    |   |                                   (targets/)
    |   +-- TargetUnavailable     (500 / 1) no LIO here (configfs or modules)
    +-- VolumeBackendError        (500 / 1) lvm2, the filesystem or sysfs
    |                                       failed (volumes/)
    +-- ListenFailed              (500 / 1) the daemon's API address cannot be
    |                                       bound or listened on (api/server.py)
    |
    |   -- the host side: iscsiattach attach / detach (host/) --
    +-- StepFailed                (500 / 1) one attach or detach step failed;
    |                                       the message names the step
    +-- DeviceMismatch            (500 / 1) the device found is not the volume
    |                                       asked for (serial, WWN, size, ro)
    +-- BrickError                (500 / 1) os-brick could not connect or
    |                                       disconnect, or no initiator name
    |
    |   -- the command-line client (cli/client.py) --
    +-- CliError                  (500 / 1) this side of the wire failed: a
    |                                       token file it cannot read, a daemon
    |                                       it cannot reach or talk to (TLS,
    |                                       timeout, not HTTP), an answer over
    |                                       16 MiB
    +-- DaemonRefused             (500 / 1) the daemon answered an error status
                                            no class above stands for (401,
                                            413, 500...); the message quotes it

Exit status 2 means "the command line or the configuration is wrong", as
argparse's own usage errors; everything else that fails is 1. ListenFailed
and the classes of the last two sections never reach the HTTP API: their
status is what ``to_fault`` would answer if one ever did. None of the
classes had to stay beside its raiser: this module imports nothing of the
project, so no import cycle can pass through it.

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
    """An HTTP-level refusal made by the API layer itself (401, 405, 413...):
    the status is the one it carries, not the table's."""

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
