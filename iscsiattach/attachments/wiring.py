"""Wiring: the store, locks and services over one target and volume backend."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iscsiattach.attachments.attachment_service import AttachmentService
from iscsiattach.attachments.desired import Converger
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.attachments.reconciler import RESTORE_WORKERS, Reconciler
from iscsiattach.attachments.sessions import SessionLister
from iscsiattach.attachments.volume_service import VolumeService
from iscsiattach.model import Portal
from iscsiattach.store import Store
from iscsiattach.targets import TargetBackend
from iscsiattach.volumes.base import VolumeBackend

DB_NAME = "iscsiattach.sqlite"


@dataclass
class Services:
    store: Store
    locks: VolumeLocks
    target: TargetBackend
    volume_backend: VolumeBackend
    converger: Converger
    volume_service: VolumeService
    attachment_service: AttachmentService
    reconciler: Reconciler
    sessions: SessionLister


def lock_dir(state_path: str) -> str:
    path = Path(state_path) / "locks"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return str(path)


def wire_services(state_path: str, target: TargetBackend, volume_backend: VolumeBackend,
                  portals: tuple[Portal, ...], max_size_gib: int = 16384,
                  restore_workers: int = RESTORE_WORKERS, upgrade: bool = True,
                  full_every: int = 1) -> Services:
    """The services over the store in ``state_path``, each handed what it
    uses. ``upgrade`` False skips the migration run, for a database known to
    be at head already (tests that copy one: the run costs more than the rest).
    ``full_every``: reconcile runs over which each volume is compared in full."""
    Path(state_path).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_path, 0o700)
    store = Store(os.path.join(state_path, DB_NAME))
    if upgrade:
        store.upgrade()
    locks = VolumeLocks(lock_dir(state_path))
    converger = Converger(store, target, volume_backend, portals)
    volume_service = VolumeService(store, locks, converger, target, volume_backend,
                                   max_size_gib)
    attachment_service = AttachmentService(store, locks, converger)
    reconciler = Reconciler(store, locks, converger, target, volume_backend, volume_service,
                            restore_workers, full_every)
    return Services(store, locks, target, volume_backend, converger, volume_service,
                    attachment_service, reconciler, SessionLister(store, target))
