"""Fault-injection points for the crash-consistency tests.

``point("connect.after_intent")`` marks a step boundary in the workflow: a
place where a crash leaves the store and LIO in a state that a restart must
repair. Points are inert unless the environment variable ISCSIATTACH_FAULTS
arms them, read once when this module is first imported:

    ISCSIATTACH_FAULTS=name[@N][,name[@N]...]

An armed point kills this process with SIGKILL (no cleanup, no atexit, no
flush of anything but the one line below) at its Nth hit (default: the
first). Before dying it writes one line to stderr, "iscsiattach-fault:
SIGKILL at NAME (hit N)", so a test can tell where the process died.

Unarmed, ``point()`` is one global lookup and a falsy test: cheap enough
to sit in every request path. POINTS lists every point placed in the code
(a unit test keeps it in step with the source).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "ISCSIATTACH_FAULTS"
MARK = "iscsiattach-fault: SIGKILL at"

POINTS: tuple[str, ...] = (
    # attachments/attachment_service.py: reserve, connect (create/update), complete, delete
    "reserve.after_volume_status",      # volume reserved, attachment row not yet written
    "reserve.after_attachment",         # attachment reserved, not yet connected
    "connect.after_intent",             # attachment attaching in the store, LIO untouched
    "connect.after_volume_status",      # volume status settled, LIO untouched
    "connect.after_converge",           # LIO grants access, reply not sent
    "complete.after_attachment",        # attachment attached, volume status not settled
    "delete.after_attachment",          # attachment detached, LIO still grants access
    "delete.after_volume_status",       # volume detaching, LIO still grants access
    "delete.after_converge",            # access removed, volume status not settled
    # attachments/desired.py: the Converger's LIO steps
    "converge.after_deauthorize",       # one ACL removed, others may remain
    "converge.after_unexport",          # export removed, reply not sent
    "converge.after_export",            # target and LUN built, no ACL yet
    "converge.after_authorize",         # one ACL granted, others may be missing
    # target/lio.py: inside one LIO change
    "lio.export.after_storage_object",  # backstore made, no target yet
    "lio.export.before_enable",         # target, portals and LUN 0, TPG disabled
    "lio.authorize.after_mapping",      # ACL and mapped LUN, no CHAP yet
    "lio.unexport.after_target",        # target gone, backstore left
    # the restore's build path (LIO empty of ours at start: after a reboot)
    "lio.restore.after_storage_object", # backstore made, no target yet
    "lio.restore.after_acl",            # target with LUN 0 and an ACL, TPG disabled
    "lio.restore.before_enable",        # every ACL built, TPG disabled
    "reconcile.after_restore",          # one volume restored, the others not yet
    # attachments/volume_service.py: volume create, extend, delete
    "volume_create.after_intent",       # row "creating", nothing provisioned
    "volume_create.after_backend",      # file made, row still "creating"
    "file_backend.after_temp_file",     # volumes/file.py: temporary file made, not linked
    "volume_extend.after_intent",       # row "extending", file not grown
    "volume_extend.after_backend",      # file grown, new size not recorded
    "volume_extend.after_size",         # new size recorded, LUN not refreshed
    "volume_delete.after_intent",       # row "deleting", export and file still there
    "volume_delete.after_unexport",     # export gone, file and row still there
    "volume_delete.after_backend",      # file gone, row still "deleting"
    # attachments/reconciler.py
    "reconcile.after_interrupted",      # an interrupted operation resolved in the store
    "reconcile.before_repair",          # drift found, not yet converged
    "reconcile.after_repair",           # converged, status not yet settled
    "reconcile.before_orphan_removal",  # an orphan export found, not yet removed
)


def parse(spec: str | None) -> dict[str, int]:
    """{point: hit number that kills} from ISCSIATTACH_FAULTS's syntax."""
    armed: dict[str, int] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, nth = item.partition("@")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown fault point {name!r}")
        if nth and (not nth.isdigit() or int(nth) < 1):
            raise ValueError(f"{ENV}: {item!r}: the hit number must be a positive integer")
        armed[name] = int(nth) if nth else 1
    return armed


_armed: dict[str, int] = parse(os.environ.get(ENV))
_hits: dict[str, int] = {}
_guard = threading.Lock()


def armed() -> dict[str, int]:
    return dict(_armed)


def rearm() -> None:
    """Read ISCSIATTACH_FAULTS again and start counting hits afresh: for a
    process forked from a parent that imported this module already (the
    crash tests start daemons from a pre-imported fork server)."""
    global _armed
    with _guard:
        _armed = parse(os.environ.get(ENV))
        _hits.clear()


def point(name: str) -> None:
    """A step boundary; kills the process here if ISCSIATTACH_FAULTS says so."""
    if _armed:
        _hit(name)


def _hit(name: str) -> None:
    if name not in _armed:
        return
    with _guard:
        _hits[name] = n = _hits.get(name, 0) + 1
        if n == _armed[name]:
            # Under the guard: no other thread passes another point meanwhile.
            os.write(sys.stderr.fileno(), f"{MARK} {name} (hit {n})\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)
