"""Wiring: the store, locks and services over one target and volume backend."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iscsiattach.attachments.desired import Converger
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.attachments.reconciler import RESTORE_WORKERS, Reconciler
from iscsiattach.attachments.attachment_service import AttachmentService
from iscsiattach.attachments.volume_service import VolumeService
from iscsiattach.store import Store
from iscsiattach.targets import TargetBackend
from iscsiattach.model import Portal
from iscsiattach.volumes.base import VolumeBackend

DB_NAME = "iscsiattach.sqlite"


@dataclass
class Services:
    store: Store
    locks: VolumeLocks
    converger: Converger
    volumes: VolumeService
    attachments: AttachmentService
    reconciler: Reconciler


def lock_dir(state_path: str) -> str:
    path = Path(state_path) / "locks"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return str(path)


def build(state_path: str, target: TargetBackend, volume_backend: VolumeBackend,
          portals: tuple[Portal, ...], max_size_gib: int = 16384,
          restore_workers: int = RESTORE_WORKERS) -> Services:
    Path(state_path).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_path, 0o700)
    store = Store(os.path.join(state_path, DB_NAME))
    store.upgrade()
    locks = VolumeLocks(lock_dir(state_path))
    converger = Converger(store, target, volume_backend, portals)
    volumes = VolumeService(store, converger, locks, max_size_gib)
    return Services(store, locks, converger, volumes,
                    AttachmentService(store, converger, locks),
                    Reconciler(converger, volumes, locks, restore_workers))
