"""An in-memory target with the same contract as LIO, for unit tests.

It keeps the state LIO would keep (targets, TPG attributes, portals, LUNs,
storage objects, ACLs with CHAP and mapped LUNs), holds foreign targets that
tests put there, and refuses what the kernel would refuse (a missing backing
file, a non-block device for iblock). Tests change ``targets`` directly to
play an administrator who edits configfs behind our back.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from iscsiattach.exception import NotFound
from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES,
    VOLUME_RE,
    AclState,
    Backing,
    ChapCredentials,
    ExportInfo,
    ExportSpec,
    ExportState,
    Grant,
    Portal,
    TargetSession,
    unit_serial,
    validate_iqn,
    volume_name,
)
from iscsiattach.targets.base import AUTH_METHOD, TargetBackend, check_backing


@dataclass
class FakeAcl:
    chap: ChapCredentials | None
    mapped_luns: dict[int, bool] = field(default_factory=dict)
    session: TargetSession | None = None     # goes with the ACL, as in LIO


@dataclass
class FakeTarget:
    tpg_enabled: bool = False
    # A new TPG in LIO starts open (authentication off); export closes it.
    tpg_attributes: dict[str, str] = field(default_factory=lambda: {
        "authentication": "0", "generate_node_acls": "0",
        "demo_mode_write_protect": "1", "cache_dynamic_acls": "0",
        "demo_mode_discovery": "1", "prod_mode_write_protect": "0"})
    auth_method: str = "CHAP,None"
    portals: set[Portal] = field(default_factory=set)
    lun0: str | None = None              # storage object name
    acls: dict[str, FakeAcl] = field(default_factory=dict)


@dataclass
class FakeStorageObject:
    backing: Backing
    serial: str


class FakeBackend(TargetBackend):
    def __init__(self, prefix: str | None = None, **kwargs) -> None:
        super().__init__(**({"prefix": prefix} if prefix else {}))
        self._lock = threading.RLock()
        self.targets: dict[str, FakeTarget] = {}
        self.storage_objects: dict[str, FakeStorageObject] = {}
        self.calls: list[str] = []       # operation log, for tests of retries
        self._next_session_id = 1

    # -- operations ---------------------------------------------------------
    def export(self, spec: ExportSpec) -> ExportInfo:
        with self._lock:
            self.calls.append("export")
            iqn = self.target_iqn(spec.volume_id)
            self._converge_storage_object(spec)
            tgt = self.targets.setdefault(iqn, FakeTarget())
            tgt.tpg_attributes.update(SECURE_TPG_ATTRIBUTES)
            tgt.auth_method = AUTH_METHOD
            tgt.portals = set(spec.portals)
            tgt.lun0 = spec.name
            tgt.tpg_enabled = True
            return self.export_info(spec)

    def restore_export(self, spec: ExportSpec, grants: list[Grant]) -> bool:
        with self._lock:
            if self.exists(spec.volume_id):
                return False
            self.calls.append("restore_export")
            check_backing(spec.backing)
            self.storage_objects[spec.name] = FakeStorageObject(
                spec.backing, unit_serial(spec.volume_id))
            self.targets[self.target_iqn(spec.volume_id)] = FakeTarget(
                tpg_enabled=True, tpg_attributes=dict(SECURE_TPG_ATTRIBUTES),
                auth_method=AUTH_METHOD, portals=set(spec.portals), lun0=spec.name,
                acls={g.initiator: FakeAcl(g.chap, {0: g.read_only}) for g in grants})
            return True

    def unexport(self, volume_id: str) -> bool:
        with self._lock:
            self.calls.append("unexport")
            iqn = self.target_iqn(volume_id)
            found = self.targets.pop(iqn, None) is not None
            found |= self.storage_objects.pop(volume_name(volume_id), None) is not None
            return found

    def authorize(self, volume_id: str, grant: Grant) -> None:
        with self._lock:
            self.calls.append("authorize")
            tgt = self._target(volume_id)
            if tgt.lun0 is None:
                raise NotFound(f"volume {volume_id} has no LUN 0 to map")
            acl = tgt.acls.setdefault(grant.initiator, FakeAcl(chap=None))
            acl.chap = grant.chap
            acl.mapped_luns = {0: grant.read_only}

    def deauthorize(self, volume_id: str, initiator: str) -> bool:
        with self._lock:
            self.calls.append("deauthorize")
            validate_iqn(initiator)
            tgt = self.targets.get(self.target_iqn(volume_id))
            return tgt is not None and tgt.acls.pop(initiator, None) is not None

    def sessions(self, volume_id: str) -> list[TargetSession]:
        with self._lock:
            tgt = self.targets.get(self.target_iqn(volume_id))
            if tgt is None or not tgt.tpg_enabled:      # disabling a TPG drops them
                return []
            return [a.session for _, a in sorted(tgt.acls.items()) if a.session]

    def login(self, volume_id: str, initiator: str, chap: ChapCredentials,
              address: str = "127.0.0.1") -> TargetSession:
        """An initiator logging in, for tests: refused (PermissionError) as
        LIO would without an enabled target, an ACL or the right CHAP."""
        with self._lock:
            tgt = self.targets.get(self.target_iqn(volume_id))
            acl = tgt.acls.get(initiator) if tgt and tgt.tpg_enabled else None
            if acl is None or acl.chap is None or (acl.chap.userid, acl.chap.password) != \
                    (chap.userid, chap.password):
                raise PermissionError(f"login of {initiator} to volume {volume_id} refused")
            acl.session = TargetSession(initiator, self._next_session_id, "LOGGED_IN",
                                        (address,))
            self._next_session_id += 1
            return acl.session

    def exists(self, volume_id: str) -> bool:
        with self._lock:
            return self.target_iqn(volume_id) in self.targets or \
                volume_name(volume_id) in self.storage_objects

    def list_exports(self, backstores: bool = True) -> list[str]:
        """As LIO: volumes with a target or a storage object of ours."""
        with self._lock:
            names = [iqn[len(self.prefix):] for iqn in self.targets
                     if iqn.startswith(self.prefix)]
            names += list(self.storage_objects) if backstores else []
            return sorted({m.group(1) for m in map(VOLUME_RE.match, names) if m})

    def inspect(self, volume_id: str) -> ExportState | None:
        with self._lock:
            iqn = self.target_iqn(volume_id)
            tgt = self.targets.get(iqn)
            if tgt is None:
                return None
            so = self.storage_objects.get(tgt.lun0) if tgt.lun0 else None
            return ExportState(
                volume_id=volume_id, target_iqn=iqn, tpg_enabled=tgt.tpg_enabled,
                tpg_attributes=dict(tgt.tpg_attributes), auth_method=tgt.auth_method,
                portals=frozenset(tgt.portals),
                lun0_backing=so.backing if so else None,
                unit_serial=so.serial if so else None,
                acls={i: AclState(i, a.chap, dict(a.mapped_luns))
                      for i, a in tgt.acls.items()})

    # -- helpers ------------------------------------------------------------
    def _target(self, volume_id: str) -> FakeTarget:
        tgt = self.targets.get(self.target_iqn(volume_id))
        if tgt is None:
            raise NotFound(f"volume {volume_id} is not exported")
        return tgt

    def _converge_storage_object(self, spec: ExportSpec) -> None:
        so = self.storage_objects.get(spec.name)
        if so is not None and so.backing == spec.backing:
            so.serial = unit_serial(spec.volume_id)
            return
        check_backing(spec.backing)
        self.storage_objects[spec.name] = FakeStorageObject(
            spec.backing, unit_serial(spec.volume_id))

