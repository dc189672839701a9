"""LIO through rtslib-fb: the only module in iscsiattach that imports rtslib.

Layout in configfs for volume ``V`` (name ``volume-V``):

    target/iscsi/<prefix>volume-V/tpgt_1/{attrib,param,np,lun/lun_0,acls/<initiator>}
    target/core/<fileio|iblock>_<index>/volume-V       (the storage object)

Every lookup is O(1) in the number of exports: rtslib objects are built in
``mode='lookup'``/``'any'`` from a path we compute, and the storage object's
backstore (HBA) index is derived from the volume id (``hba_slots``), so we
never use rtslib's backstore cache (a walk over all of ``core/`` that goes
stale across processes) nor ``StorageObject.delete()`` (which walks every LUN
of every target). Only ``list_exports`` walks, for the reconciler.

rtslib and kernel errors become ``TargetError``; messages name objects, never
CHAP secrets. All operations hold the LIO lock (an external oslo.concurrency
lock when ``lock_path`` is given), and rtslib objects live only inside one
locked operation, so nothing cached outlives a change made by someone else.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rtslib_fb
from oslo_concurrency import lockutils
from rtslib_fb import (BlockStorageObject, FabricModule, FileIOStorageObject,
                       LUN, MappedLUN, NetworkPortal, NodeACL, Target, TPG)
from rtslib_fb.utils import RTSLibError

from iscsiattach import failpoints
from iscsiattach.exception import (IscsiAttachError, InvalidInput, NotFound,
                                   TargetError, TargetUnavailable)
from iscsiattach.secret import Secret
from iscsiattach.targets.base import AUTH_METHOD, TargetBackend, check_backing
from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES, AclState, Backing, BackingKind, ChapCredentials,
    ExportInfo, ExportSpec, ExportState, Grant, Portal, unit_serial,
    validate_iqn, validate_volume_id, volume_name)

from iscsiattach.targets.lio_build import (build_target, claim_storage_object,
                                          configure_storage_object, hide_secrets,
                                          require_acl_auth, set_secret)
from iscsiattach.targets.lio_layout import (CONFIGFS, DIRPREFIX, HBA_BASE, KIND_OF_DIR,
                                           TPG_TAG, VOLUME_RE, has_children, hba_slots)

LOG = logging.getLogger(__name__)
@contextlib.contextmanager
def _translated(action: str):
    """Turn rtslib/kernel errors into TargetError naming ``action``.

    CHAP writes do not go through here (see ``_write_auth``): rtslib's
    message for them could quote the value.
    """
    try:
        yield
    except IscsiAttachError:
        raise
    except (RTSLibError, OSError) as exc:
        raise TargetError(f"{action}: {exc or type(exc).__name__}") from None


class LioBackend(TargetBackend):
    """The kernel's LIO iSCSI target."""

    def __init__(self, prefix: str | None = None, *, write_back: bool = True,
                 lock_path: str | None = None,
                 lock_wait: Callable[[float], None] | None = None) -> None:
        super().__init__(**({"prefix": prefix} if prefix else {}))
        self.write_back = write_back
        self._lock_path = lock_path
        self._lock_wait = lock_wait       # observer of seconds spent waiting (metrics)
        self._thread_lock = threading.RLock()
        self._fabric: FabricModule | None = None
        self._dbroot = ""

    # -- plumbing -----------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        asked = time.monotonic()
        if self._lock_path:
            lock = lockutils.lock("lio", lock_file_prefix="iscsiattach-",
                                  external=True, lock_path=self._lock_path)
        else:
            lock = self._thread_lock
        with lock:
            if self._lock_wait:
                self._lock_wait(time.monotonic() - asked)
            yield

    def _fm(self) -> FabricModule:
        if self._fabric is None:
            if not CONFIGFS.is_dir():
                raise TargetUnavailable(
                    f"LIO is not available: {CONFIGFS} is missing (load target_core_mod "
                    "and iscsi_target_mod, mount configfs)")
            with _translated("loading the iSCSI fabric module"):
                # Sets LIO's dbroot (where the kernel keeps reservations); O(1).
                self._dbroot = rtslib_fb.RTSRoot().dbroot
                fabric = FabricModule("iscsi")
                fabric._check_self()
            self._fabric = fabric
        return self._fabric

    def _target_path(self, volume_id: str) -> Path:
        return Path(self._fm().path) / self.target_iqn(volume_id)

    def _lookup_tpg(self, volume_id: str) -> TPG | None:
        path = self._target_path(volume_id)
        if not (path / f"tpgt_{TPG_TAG}").is_dir():
            return None
        return TPG(Target(self._fm(), path.name, mode="lookup"), TPG_TAG, mode="lookup")

    # -- storage objects ----------------------------------------------------
    def _find_storage_object(self, volume_id: str) -> tuple[BackingKind, int] | None:
        name = volume_name(volume_id)
        core = f"{CONFIGFS}/core"
        for index in hba_slots(self.prefix, volume_id):
            for kind, dirp in DIRPREFIX.items():
                # os.path, not pathlib: 16 probes per call, and building Path
                # objects costs more than the stat()s in a slow guest.
                if os.path.isdir(f"{core}/{dirp}_{index}/{name}"):
                    return kind, index
        return None

    def _free_slot(self, volume_id: str, kind: BackingKind) -> int:
        for index in hba_slots(self.prefix, volume_id):
            hba = CONFIGFS / "core" / f"{DIRPREFIX[kind]}_{index}"
            if hba.is_dir() and not has_children(hba):
                hba.rmdir()     # left empty by a crash; rtslib would refuse it
            if not hba.is_dir():
                return index
        raise TargetError(f"no free backstore slot for volume {volume_id}")

    def _storage_object(self, volume_id: str):
        found = self._find_storage_object(volume_id)
        return _so_at(*found, volume_name(volume_id)) if found else None

    @staticmethod
    def _backing_of(so) -> Backing:
        if isinstance(so, FileIOStorageObject):
            return Backing(BackingKind.FILE, so.udev_path, so.size)
        return Backing(BackingKind.BLOCK, so.udev_path)

    def _create_storage_object(self, spec: ExportSpec) -> tuple[BackingKind, int]:
        kind, index = self._claim_storage_object(spec)
        self._finish_storage_object(spec, kind, index)
        return kind, index

    def _claim_storage_object(self, spec: ExportSpec) -> tuple[BackingKind, int]:
        """Make the storage object's folder in a free backstore slot (under
        the LIO lock: slots are shared by all volumes)."""
        kind = spec.backing.kind
        index = self._free_slot(spec.volume_id, kind)
        self._fm()                      # LIO there, dbroot known
        claim_storage_object(self._so_dir(kind, index, spec.name))
        return kind, index

    def _finish_storage_object(self, spec: ExportSpec, kind: BackingKind, index: int) -> None:
        b = spec.backing
        LOG.info("creating %s storage object %s on %s", b.kind.value, spec.name, b.path)
        configure_storage_object(self._so_dir(kind, index, spec.name), b,
                                 unit_serial(spec.volume_id), write_back=self.write_back,
                                 dbroot=self._dbroot)

    @staticmethod
    def _so_dir(kind: BackingKind, index: int, name: str) -> str:
        return f"{CONFIGFS}/core/{DIRPREFIX[kind]}_{index}/{name}"

    def _storage_object_matches(self, so, spec: ExportSpec) -> bool:
        try:
            return self._backing_of(so) == spec.backing and \
                so.wwn == unit_serial(spec.volume_id)
        except (RTSLibError, OSError, InvalidInput):
            return False        # half-configured (a crash mid-create): replace it

    @staticmethod
    def _check_new_backing(backing: Backing) -> None:
        check_backing(backing)
        if backing.kind is BackingKind.FILE:
            _check_direct_io(backing.path)

    def _delete_storage_object(self, so) -> None:
        # Our own delete: rtslib's StorageObject.delete() first searches every
        # LUN of every target for links to it. Our only LUN is gone by now;
        # the kernel refuses (EBUSY) if anyone else still links to it.
        hba = Path(so.path).parent
        Path(so.path).rmdir()
        if not has_children(hba):
            hba.rmdir()

    def _converge_storage_object(self, spec: ExportSpec, tpg: TPG):
        """The right storage object, and the ACL mappings to restore if it was replaced."""
        so = self._storage_object(spec.volume_id)
        if so is not None and self._storage_object_matches(so, spec):
            return so, {}
        self._check_new_backing(spec.backing)    # before anything old goes
        kept = {}
        if so is not None:
            LOG.warning("storage object %s drifted; recreating it", spec.name)
            kept = self._unlink_lun0(tpg)
            self._delete_storage_object(so)
        return _so_at(*self._create_storage_object(spec), spec.name), kept

    # -- operations ---------------------------------------------------------
    def export(self, spec: ExportSpec) -> ExportInfo:
        with self._locked(), _translated(f"exporting volume {spec.volume_id}"):
            fresh = not self._target_path(spec.volume_id).is_dir()
            try:
                self._converge_export(spec)
            except Exception:
                if fresh:   # leave nothing half-built behind
                    self._remove(spec.volume_id)
                raise
            return self.export_info(spec)

    def _converge_export(self, spec: ExportSpec) -> None:
        target = Target(self._fm(), self.target_iqn(spec.volume_id), mode="any")
        tpg = TPG(target, TPG_TAG, mode="any")
        so, kept = self._converge_storage_object(spec, tpg)
        failpoints.point("lio.export.after_storage_object")
        # Closed before it is enabled: never a moment with open access.
        self._secure_tpg(tpg)
        self._converge_portals(tpg, spec.portals)
        self._converge_lun0(tpg, so, kept)
        if not tpg.enable:
            failpoints.point("lio.export.before_enable")
            tpg.enable = True

    def restore_export(self, spec: ExportSpec, grants: list[Grant]) -> bool:
        """The export and its ACLs where LIO holds nothing of this volume (a
        restore after a reboot), written straight from the spec: none of the
        reads that converging does (each configfs read costs about as much as
        a write). False, with nothing changed, if any of the volume's export
        is there; export()/authorize() converge it.

        The LIO lock is held only while the storage object claims its
        backstore slot, the one folder volumes share. Everything after that
        is under folders of this volume alone, which the caller's volume lock
        guards: builds of different volumes run side by side, one waiting in
        the kernel while another writes (a restore is mostly such waits).
        """
        vid = spec.volume_id
        self._check_new_backing(spec.backing)
        with _translated(f"building the export of volume {vid}"):
            with self._locked():
                if self._target_path(vid).is_dir() or self._find_storage_object(vid):
                    return False
                kind, index = self._claim_storage_object(spec)
            try:
                self._finish_storage_object(spec, kind, index)
                build_target(str(self._target_path(vid)), TPG_TAG, spec.portals,
                             self._so_dir(kind, index, spec.name), grants)
            except Exception:
                with self._locked():
                    self._remove(vid)       # leave nothing half-built behind
                raise
            return True

    def unexport(self, volume_id: str) -> bool:
        validate_volume_id(volume_id)
        with self._locked(), _translated(f"removing the export of volume {volume_id}"):
            return self._remove(volume_id)

    def _remove(self, volume_id: str) -> bool:
        removed = False
        path = self._target_path(volume_id)
        if path.is_dir():
            LOG.info("removing target %s", path.name)
            # Disables the TPG first, which drops the sessions.
            Target(self._fm(), path.name, mode="lookup").delete()
            removed = True
            failpoints.point("lio.unexport.after_target")
        so = self._storage_object(volume_id)
        if so is not None:
            self._delete_storage_object(so)
            removed = True
        return removed

    def authorize(self, volume_id: str, grant: Grant) -> None:
        with self._locked(), _translated(f"authorizing {grant.initiator} on volume {volume_id}"):
            tpg = self._lookup_tpg(volume_id)
            if tpg is None or not (Path(tpg.path) / "lun" / "lun_0").is_dir():
                raise NotFound(f"volume {volume_id} is not exported")
            acl = NodeACL(tpg, grant.initiator, mode="any")
            # Mapping first: an ACL without CHAP admits nobody yet, and new
            # mappings start write-protected (prod_mode_write_protect=1).
            self._converge_mapping(acl, grant.read_only)
            failpoints.point("lio.authorize.after_mapping")
            self._converge_chap(acl, grant.chap)
            require_acl_auth(acl.path)

    def deauthorize(self, volume_id: str, initiator: str) -> bool:
        validate_iqn(initiator)
        with self._locked(), _translated(f"removing {initiator} from volume {volume_id}"):
            tpg = self._lookup_tpg(volume_id)
            if tpg is None or not (Path(tpg.path) / "acls" / initiator).is_dir():
                return False
            LOG.info("removing ACL %s from %s", initiator, self.target_iqn(volume_id))
            # The kernel ends the initiator's sessions when its ACL goes.
            NodeACL(tpg, initiator, mode="lookup").delete()
            return True

    def exists(self, volume_id: str) -> bool:
        validate_volume_id(volume_id)
        with self._locked(), _translated(f"looking up volume {volume_id}"):
            return self._target_path(volume_id).is_dir() or \
                self._find_storage_object(volume_id) is not None

    def list_exports(self) -> list[str]:
        """Volume ids with a target or a storage object of ours (walks; reconciler only)."""
        with self._locked(), _translated("listing exports"):
            ours: set[str] = set()
            head = self.prefix + "volume-"
            for entry in os.scandir(self._fm().path):
                if entry.name.startswith(head):
                    m = VOLUME_RE.match(entry.name[len(self.prefix):])
                    if m:
                        ours.add(m.group(1))
            for hba in (CONFIGFS / "core").iterdir():
                dirp, _, index = hba.name.rpartition("_")
                if dirp in KIND_OF_DIR and index.isdigit() and int(index) >= HBA_BASE:
                    for so in hba.iterdir():
                        m = VOLUME_RE.match(so.name)
                        if m and int(index) in hba_slots(self.prefix, m.group(1)):
                            ours.add(m.group(1))
            return sorted(ours)

    def inspect(self, volume_id: str) -> ExportState | None:
        validate_volume_id(volume_id)
        with self._locked(), _translated(f"inspecting volume {volume_id}"):
            path = self._target_path(volume_id)
            if not path.is_dir():
                return None
            tpg = self._lookup_tpg(volume_id)
            if tpg is None:
                return ExportState(volume_id, path.name, False, {}, None, frozenset(),
                                   None, None)
            lun0 = self._lun0_storage_object(tpg)
            return ExportState(
                volume_id=volume_id, target_iqn=path.name, tpg_enabled=tpg.enable,
                tpg_attributes={a: tpg.get_attribute(a) for a in SECURE_TPG_ATTRIBUTES},
                auth_method=tpg.get_parameter("AuthMethod"),
                portals=frozenset(self._portals(tpg)),
                lun0_backing=self._backing_of(lun0) if lun0 else None,
                unit_serial=lun0.wwn if lun0 else None,
                acls={acl.node_wwn: self._acl_state(acl) for acl in tpg.node_acls})

    # -- convergence steps --------------------------------------------------
    @staticmethod
    def _secure_tpg(tpg: TPG) -> None:
        wrong = {n: w for n, w in SECURE_TPG_ATTRIBUTES.items() if tpg.get_attribute(n) != w}
        bad_auth = tpg.get_parameter("AuthMethod") != AUTH_METHOD
        if not wrong and not bad_auth:
            return
        if tpg.enable:
            # Fixing the flags only changes future logins; disabling the TPG
            # drops sessions that got in while it was open. Re-enabled by export.
            LOG.warning("TPG of %s was open; disabling it to drop its sessions",
                        tpg.parent_target.wwn)
            tpg.enable = False
        for name, want in wrong.items():
            LOG.info("setting %s=%s on %s", name, want, tpg.parent_target.wwn)
            tpg.set_attribute(name, want)
        if bad_auth:
            tpg.set_parameter("AuthMethod", AUTH_METHOD)

    def _portals(self, tpg: TPG) -> list[Portal]:
        out = []
        for entry in (Path(tpg.path) / "np").iterdir():
            try:
                out.append(Portal.parse(entry.name))
            except InvalidInput:
                LOG.warning("unparseable portal %s on %s", entry.name, tpg.path)
        return out

    def _converge_portals(self, tpg: TPG, portals: tuple[Portal, ...]) -> None:
        have = set(self._portals(tpg))
        for portal in have - set(portals):
            LOG.info("removing portal %s from %s", portal, tpg.parent_target.wwn)
            NetworkPortal(tpg, _np_ip(portal), portal.port, mode="lookup").delete()
        for portal in set(portals) - have:
            with _translated(f"listening on {portal}"):
                NetworkPortal(tpg, _np_ip(portal), portal.port, mode="create")

    def _lun0_storage_object(self, tpg: TPG):
        lun_dir = Path(tpg.path) / "lun" / "lun_0"
        if not lun_dir.is_dir():
            return None
        for link in lun_dir.iterdir():
            if link.is_symlink():
                so_path = Path(os.path.realpath(link))
                dirp, _, index = so_path.parent.name.rpartition("_")
                kind = KIND_OF_DIR.get(dirp)
                return _so_at(kind, int(index), so_path.name) if kind else None
        return None

    def _converge_lun0(self, tpg: TPG, so, kept: dict[str, bool]) -> None:
        current = self._lun0_storage_object(tpg)
        if current is not None and current.path == so.path:
            return
        write_protect = {**kept, **self._unlink_lun0(tpg)}
        LUN(tpg, 0, so)
        # Mapped LUNs went with the old LUN; put back the ones ACLs had.
        for acl_name, wp in write_protect.items():
            MappedLUN(NodeACL(tpg, acl_name, mode="lookup"), 0, 0, write_protect=wp)

    @staticmethod
    def _unlink_lun0(tpg: TPG) -> dict[str, bool]:
        """Remove LUN 0 (and its mapped LUNs); return each ACL's write-protect flag."""
        if not (Path(tpg.path) / "lun" / "lun_0").is_dir():
            return {}
        kept = {}
        for acl in tpg.node_acls:
            ml = Path(acl.path) / "lun_0"
            if ml.is_dir():
                kept[acl.node_wwn] = _write_protected(ml)
        LUN(tpg, 0).delete()
        return kept

    @staticmethod
    def _converge_chap(acl: NodeACL, chap: ChapCredentials) -> None:
        blank = Secret("")
        for attr, want in (("chap_userid", Secret(chap.userid)),
                           ("chap_password", chap.password),
                           ("chap_mutual_userid", Secret(chap.mutual_userid or "")),
                           ("chap_mutual_password", chap.mutual_password or blank)):
            _write_auth(acl, attr, want)
        hide_secrets(f"{acl.path}/auth")

    @staticmethod
    def _converge_mapping(acl: NodeACL, read_only: bool) -> None:
        for entry in Path(acl.path).iterdir():
            if entry.is_dir() and entry.name.startswith("lun_") and entry.name != "lun_0":
                MappedLUN(acl, int(entry.name[4:])).delete()
        mapped_dir = Path(acl.path) / "lun_0"
        if mapped_dir.is_dir() and not any(p.is_symlink() for p in mapped_dir.iterdir()):
            mapped_dir.rmdir()      # a crash between mkdir and symlink
        if mapped_dir.is_dir():
            mapped = MappedLUN(acl, 0)
            if mapped.write_protect != read_only:
                mapped.write_protect = read_only
        else:
            MappedLUN(acl, 0, 0, write_protect=read_only)

    @staticmethod
    def _acl_state(acl: NodeACL) -> AclState:
        mapped = {}
        for entry in Path(acl.path).iterdir():
            if entry.is_dir() and entry.name.startswith("lun_"):
                mapped[int(entry.name[4:])] = _write_protected(entry)
        try:
            chap = ChapCredentials(
                acl.chap_userid, Secret(acl.chap_password),
                acl.chap_mutual_userid or None,
                Secret(acl.chap_mutual_password) if acl.chap_mutual_password else None)
        except InvalidInput:
            chap = None     # empty or unusable credentials: reported as drift
        return AclState(acl.node_wwn, chap, mapped)


def _write_auth(acl: NodeACL, attr: str, want: Secret) -> None:
    """Set one CHAP attribute if it differs; the value never reaches an error."""
    try:
        if getattr(acl, attr) == want.reveal():
            return
    except (RTSLibError, OSError):
        pass                # unreadable: write it, which reports a real failure
    set_secret(lambda value: setattr(acl, attr, value), want, f"{attr} for {acl.node_wwn}",
               errors=(RTSLibError, OSError))


def _so_at(kind: BackingKind, index: int, name: str):
    cls = FileIOStorageObject if kind is BackingKind.FILE else BlockStorageObject
    return cls(name, index=index)


def _write_protected(mapped_lun_dir: Path) -> bool:
    return (mapped_lun_dir / "write_protect").read_text().strip() == "1"


def _np_ip(portal: Portal) -> str:
    return f"[{portal.ip}]" if portal.is_ipv6 else portal.ip


def _check_direct_io(path: str) -> None:
    """Async fileio does direct I/O; refuse a filesystem that cannot (tmpfs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise InvalidInput(f"backing {path} is on a filesystem without direct I/O "
                               "(such as tmpfs); asynchronous fileio needs it") from None
        raise
    os.close(fd)
