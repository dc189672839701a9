"""LioBackend: the kernel's LIO iSCSI target behind the TargetBackend contract.

Every lookup is O(1) in the number of exports: objects are found at the
folders configfs.py computes, and the storage object's backstore (HBA) index
is derived from the volume id (``configfs.hba_slots``), so we never use
rtslib's backstore cache (a walk over all of ``core/`` that goes stale across
processes) nor ``StorageObject.delete()`` (which walks every LUN of every
target). Only ``list_exports`` walks, for the reconciler.

Exports are converged through rtslib objects (converge.py); new storage
objects, and whole exports in a restore, are written straight into configfs
(build.py). rtslib and kernel errors become ``TargetError``; messages name
objects, never CHAP secrets.

Locks (external oslo.concurrency locks when ``lock_path`` is given, so every
process agrees): an operation on a volume holds that volume's LIO lock, as
it touches only folders named after the volume; the one shared lock is held
only for what volumes share, the backstore slots (a claim probes slots that
other volumes' objects may be leaving) and the fabric module's first load.
Order: a volume's lock, then the shared one, never the other way. rtslib
objects live only inside one locked operation, so nothing cached outlives a
change made by someone else.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import rtslib_fb
from oslo_concurrency import lockutils
from rtslib_fb import TPG, FabricModule, NodeACL, Target

from iscsiattach import failpoints
from iscsiattach.exception import NotFound, TargetError, TargetUnavailable
from iscsiattach.model import (
    Backing,
    BackingKind,
    ExportInfo,
    ExportOutline,
    ExportSpec,
    ExportState,
    Grant,
    TargetSession,
    unit_serial,
    validate_iqn,
    validate_volume_id,
    volume_name,
)
from iscsiattach.targets.base import TargetBackend, check_backing
from iscsiattach.targets.lio import build, configfs, converge, inspect
from iscsiattach.targets.lio.converge import translated

LOG = logging.getLogger(__name__)


class LioBackend(TargetBackend):
    """The kernel's LIO iSCSI target."""

    def __init__(self, prefix: str | None = None, *, write_back: bool = True,
                 lock_path: str | None = None,
                 lock_wait: Callable[[float], None] | None = None) -> None:
        super().__init__(**({"prefix": prefix} if prefix else {}))
        self.write_back = write_back
        self._lock_path = lock_path
        self._lock_wait = lock_wait       # observer of seconds spent waiting (metrics)
        self._thread_locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._fabric: FabricModule | None = None
        self._dbroot = ""

    # -- plumbing -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, volume_id: str | None = None):
        """The LIO lock of ``volume_id``, or (None) the shared one."""
        name = f"lio-volume-{volume_id}" if volume_id else "lio"
        asked = time.monotonic()
        lock: contextlib.AbstractContextManager
        if self._lock_path:
            lock = lockutils.lock(name, lock_file_prefix="iscsiattach-",
                                  external=True, lock_path=self._lock_path)
        else:
            with self._guard:
                lock = self._thread_locks.setdefault(name, threading.RLock())
        with lock:
            if self._lock_wait:
                self._lock_wait(time.monotonic() - asked)
            yield

    def _fm(self) -> FabricModule:
        if self._fabric is None:
            with self._locked():
                return self._load_fabric()
        return self._fabric

    def _load_fabric(self) -> FabricModule:
        if self._fabric is None:
            if not configfs.is_dir(configfs.ROOT):
                raise TargetUnavailable(
                    f"LIO is not available: {configfs.ROOT} is missing (load "
                    "target_core_mod and iscsi_target_mod, mount configfs)")
            with translated("loading the iSCSI fabric module"):
                # Sets LIO's dbroot (where the kernel keeps reservations); O(1).
                self._dbroot = rtslib_fb.RTSRoot().dbroot
                fabric = FabricModule("iscsi")
                fabric._check_self()
            with translated(f"making {self._dbroot}/pr for persistent reservations"):
                build.ensure_reservation_dir(self._dbroot)
            self._fabric = fabric
        return self._fabric

    def _target_dir(self, volume_id: str) -> str:
        self._fm()                      # LIO there, the fabric module loaded
        return configfs.target_dir(self.target_iqn(volume_id))

    def _lookup_tpg(self, volume_id: str) -> TPG | None:
        iqn = self.target_iqn(volume_id)
        if not configfs.is_dir(configfs.tpg_dir(iqn)):
            return None
        return TPG(Target(self._fm(), iqn, mode="lookup"), configfs.TPG_TAG, mode="lookup")

    # -- storage objects ----------------------------------------------------
    def _find_storage_object(self, volume_id: str) -> tuple[BackingKind, int] | None:
        return configfs.find_storage_object(self.prefix, volume_id, volume_name(volume_id))

    def _storage_object(self, volume_id: str):
        found = self._find_storage_object(volume_id)
        return converge.so_at(*found, volume_name(volume_id)) if found else None

    def _create_storage_object(self, spec: ExportSpec) -> tuple[BackingKind, int]:
        kind, index = self._claim_storage_object(spec)
        self._finish_storage_object(spec, kind, index)
        return kind, index

    def _claim_storage_object(self, spec: ExportSpec) -> tuple[BackingKind, int]:
        """Make the storage object's folder in a free backstore slot (under
        the shared lock: slots are shared by all volumes)."""
        kind = spec.backing.kind
        self._fm()                      # LIO there, dbroot known
        with self._locked():
            index = configfs.free_hba_slot(self.prefix, spec.volume_id, kind)
            if index is None:
                raise TargetError(f"no free backstore slot for volume {spec.volume_id}")
            configfs.claim_storage_object(configfs.so_dir(kind, index, spec.name))
        return kind, index

    def _release_storage_object(self, so: str) -> None:
        """Remove a storage object and its backstore folder (under the shared
        lock: a claim probing that slot must not see it half gone)."""
        with self._locked():
            configfs.remove_storage_object(so)

    def _finish_storage_object(self, spec: ExportSpec, kind: BackingKind, index: int) -> None:
        b = spec.backing
        LOG.info("creating %s storage object %s on %s", b.kind.value, spec.name, b.path)
        build.configure_storage_object(configfs.so_dir(kind, index, spec.name), b,
                                       unit_serial(spec.volume_id),
                                       write_back=self.write_back, dbroot=self._dbroot)

    @staticmethod
    def _check_new_backing(backing: Backing) -> None:
        check_backing(backing)
        if backing.kind is BackingKind.FILE and backing.direct_io:
            build.check_direct_io(backing.path)

    def _converge_storage_object(self, spec: ExportSpec, tpg: TPG):
        """The right storage object, and the ACL mappings to restore if it was replaced."""
        so = self._storage_object(spec.volume_id)
        if so is not None and converge.storage_object_matches(so, spec):
            return so, {}
        self._check_new_backing(spec.backing)    # before anything old goes
        kept = {}
        if so is not None:
            LOG.warning("storage object %s drifted; recreating it", spec.name)
            kept = converge.unlink_lun0(tpg)
            # Our own delete: rtslib's StorageObject.delete() first searches
            # every LUN of every target for links to it. Our only LUN is gone.
            self._release_storage_object(so.path)
        return converge.so_at(*self._create_storage_object(spec), spec.name), kept

    # -- operations ---------------------------------------------------------
    def export(self, spec: ExportSpec) -> ExportInfo:
        with self._locked(spec.volume_id), translated(f"exporting volume {spec.volume_id}"):
            fresh = not configfs.is_dir(self._target_dir(spec.volume_id))
            try:
                self._converge_export(spec)
            except Exception:
                if fresh:   # leave nothing half-built behind
                    self._remove(spec.volume_id)
                raise
            return self.export_info(spec)

    def _converge_export(self, spec: ExportSpec) -> None:
        target = Target(self._fm(), self.target_iqn(spec.volume_id), mode="any")
        tpg = TPG(target, configfs.TPG_TAG, mode="any")
        so, kept = self._converge_storage_object(spec, tpg)
        failpoints.point("lio.export.after_storage_object")
        # Closed before it is enabled: never a moment with open access.
        converge.secure_tpg(tpg)
        converge.converge_portals(tpg, spec.portals)
        converge.converge_lun0(tpg, so, kept)
        if not tpg.enable:
            failpoints.point("lio.export.before_enable")
            tpg.enable = True

    def restore_export(self, spec: ExportSpec, grants: list[Grant]) -> bool:
        """The export and its ACLs where LIO holds nothing of this volume (a
        restore after a reboot), written straight from the spec: none of the
        reads that converging does (each configfs read costs about as much as
        a write). False, with nothing changed, if any of the volume's export
        is there; export()/authorize() converge it.

        Builds of different volumes run side by side, one waiting in the
        kernel while another writes (a restore is mostly such waits).
        """
        vid = spec.volume_id
        self._check_new_backing(spec.backing)
        with self._locked(vid), translated(f"building the export of volume {vid}"):
            if configfs.is_dir(self._target_dir(vid)) or self._find_storage_object(vid):
                return False
            kind, index = self._claim_storage_object(spec)
            try:
                self._finish_storage_object(spec, kind, index)
                failpoints.point("lio.restore.after_storage_object")
                build.build_target(self.target_iqn(vid), spec.portals,
                                   configfs.so_dir(kind, index, spec.name), grants)
            except Exception:
                self._remove(vid)       # leave nothing half-built behind
                raise
            return True

    def unexport(self, volume_id: str) -> bool:
        validate_volume_id(volume_id)
        with self._locked(volume_id), translated(f"removing the export of volume {volume_id}"):
            return self._remove(volume_id)

    def _remove(self, volume_id: str) -> bool:
        removed = False
        if configfs.is_dir(self._target_dir(volume_id)):
            iqn = self.target_iqn(volume_id)
            LOG.info("removing target %s", iqn)
            # Disables the TPG first, which drops the sessions.
            Target(self._fm(), iqn, mode="lookup").delete()
            removed = True
            failpoints.point("lio.unexport.after_target")
        found = self._find_storage_object(volume_id)
        if found is not None:
            self._release_storage_object(configfs.so_dir(*found, volume_name(volume_id)))
            removed = True
        return removed

    def authorize(self, volume_id: str, grant: Grant) -> None:
        with self._locked(volume_id), \
                translated(f"authorizing {grant.initiator} on volume {volume_id}"):
            tpg = self._lookup_tpg(volume_id)
            if tpg is None or not configfs.is_dir(configfs.lun0_dir(tpg.path)):
                raise NotFound(f"volume {volume_id} is not exported")
            acl = NodeACL(tpg, grant.initiator, mode="any")
            # Mapping first: an ACL without CHAP admits nobody yet, and new
            # mappings start write-protected (prod_mode_write_protect=1).
            converge.converge_mapping(acl, grant.read_only)
            failpoints.point("lio.authorize.after_mapping")
            converge.converge_chap(acl, grant.chap)
            configfs.require_acl_auth(acl.path)

    def deauthorize(self, volume_id: str, initiator: str) -> bool:
        validate_iqn(initiator)
        with self._locked(volume_id), \
                translated(f"removing {initiator} from volume {volume_id}"):
            tpg = self._lookup_tpg(volume_id)
            if tpg is None or not configfs.is_dir(configfs.acl_dir(tpg.path, initiator)):
                return False
            LOG.info("removing ACL %s from %s", initiator, self.target_iqn(volume_id))
            # The kernel ends the initiator's sessions when its ACL goes.
            NodeACL(tpg, initiator, mode="lookup").delete()
            return True

    def exists(self, volume_id: str) -> bool:
        validate_volume_id(volume_id)
        with self._locked(volume_id):
            return self.peek_exists(volume_id)

    def peek_exists(self, volume_id: str) -> bool:
        validate_volume_id(volume_id)
        with translated(f"looking up volume {volume_id}"):
            return configfs.is_dir(self._target_dir(volume_id)) or \
                self._find_storage_object(volume_id) is not None

    def list_exports(self, backstores: bool = True) -> list[str]:
        """Volume ids with a target or a storage object of ours (walks;
        reconciler only). The backstores' walk visits one folder per storage
        object of every user of LIO; the targets' is one folder."""
        self._fm()
        # Under the shared lock: a backstore folder released mid-walk would
        # fail the listing.
        with self._locked(), translated("listing exports"):
            return sorted(configfs.volume_ids(self.prefix, backstores))

    def inspect(self, volume_id: str) -> ExportState | None:
        """Plain reads of this export's folders (inspect.py), under the
        volume's lock; the reconciler's lockless look is peek()/outline()."""
        validate_volume_id(volume_id)
        with self._locked(volume_id), translated(f"inspecting volume {volume_id}"):
            return self.peek(volume_id)

    def peek(self, volume_id: str) -> ExportState | None:
        """inspect() without the lock: its file lock costs as much as half
        the reads, and a read that meets a folder going away raises, which
        the reconciler answers with a look under the lock."""
        validate_volume_id(volume_id)
        with translated(f"inspecting volume {volume_id}"):
            self._fm()
            return inspect.export_state(volume_id, self.target_iqn(volume_id))

    def sessions(self, volume_id: str) -> list[TargetSession]:
        validate_volume_id(volume_id)
        with translated(f"reading the sessions of volume {volume_id}"):
            self._fm()
            return inspect.sessions(self.target_iqn(volume_id))

    def outline(self, volume_id: str) -> ExportOutline | None:
        """Without the lock, as peek(), in a few reads (inspect.export_outline)."""
        validate_volume_id(volume_id)
        with translated(f"looking at volume {volume_id}"):
            self._fm()
            return inspect.export_outline(self.target_iqn(volume_id))
