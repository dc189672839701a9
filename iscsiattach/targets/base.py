"""The target-backend interface: what the service asks of the kernel target.

A backend exports volumes (one target per volume, LUN 0), lets initiators in
with per-initiator CHAP, and reports what exists under its own prefix. Every
operation is idempotent and converges: it creates what is missing, fixes what
drifted and treats removing something already gone as success. Two
implementations honour this contract: ``lio.LioBackend`` (the kernel, through
rtslib-fb) and ``fake.FakeBackend`` (in memory, for unit tests); one contract
suite (tests/contract) runs against both.
"""
from __future__ import annotations

import abc
import os
import stat
from dataclasses import dataclass

from iscsiattach.exception import InvalidInput
from iscsiattach.model import (
    ACCESS_TPG_ATTRIBUTES,
    SECURE_TPG_ATTRIBUTES,
    Backing,
    BackingKind,
    ExportInfo,
    ExportOutline,
    ExportSpec,
    ExportState,
    Grant,
    TargetSession,
    naa_wwn,
    unit_serial,
    validate_prefix,
    validate_volume_id,
    volume_name,
)

DEFAULT_PREFIX = "iqn.2010-10.org.openstack:"
# The iSCSI AuthMethod the TPG offers: CHAP only, so "None" is never agreed.
AUTH_METHOD = "CHAP"


@dataclass(frozen=True)
class Drift:
    """One difference between the desired and the found state.

    ``detail`` names what differs, never a secret value.
    """
    volume_id: str
    kind: str
    detail: str
    initiator: str | None = None

    def __str__(self) -> str:
        who = f" initiator {self.initiator}" if self.initiator else ""
        return f"volume {self.volume_id}{who}: {self.kind}: {self.detail}"


class TargetBackend(abc.ABC):
    """One kernel target; every name it touches starts with ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = validate_prefix(prefix)

    def target_iqn(self, volume_id: str) -> str:
        return self.prefix + volume_name(validate_volume_id(volume_id))

    def export_info(self, spec: ExportSpec) -> ExportInfo:
        return ExportInfo(volume_id=spec.volume_id,
                          target_iqn=self.target_iqn(spec.volume_id), lun=0,
                          portals=spec.portals,
                          unit_serial=unit_serial(spec.volume_id),
                          naa_wwn=naa_wwn(spec.volume_id))

    @abc.abstractmethod
    def export(self, spec: ExportSpec) -> ExportInfo:
        """Create or repair the export of one volume (target, TPG, portals, LUN 0)."""

    @abc.abstractmethod
    def restore_export(self, spec: ExportSpec, grants: list[Grant]) -> bool:
        """Create the export and the grants' ACLs where nothing of this volume
        exists (a restore after a reboot), without first reading what is there.
        The result is what export() then authorize() of each grant would make.
        False, with nothing changed, if any of the volume's export exists."""

    @abc.abstractmethod
    def unexport(self, volume_id: str) -> bool:
        """Remove the export and its storage object; False if nothing was there."""

    @abc.abstractmethod
    def authorize(self, volume_id: str, grant: Grant) -> None:
        """Create or repair the ACL of one initiator. NotFound if not exported."""

    @abc.abstractmethod
    def deauthorize(self, volume_id: str, initiator: str) -> bool:
        """Remove one initiator's ACL (its sessions drop); False if it was not there."""

    @abc.abstractmethod
    def exists(self, volume_id: str) -> bool:
        """True if anything of this volume's export (target or storage object) is there."""

    @abc.abstractmethod
    def sessions(self, volume_id: str) -> list[TargetSession]:
        """Who is logged in to this volume's target now, by initiator; []
        when it has no target. Reads only: no lock, nothing changed."""

    def peek_exists(self, volume_id: str) -> bool:
        """exists() without the volume's lock (see peek())."""
        return self.exists(volume_id)

    @abc.abstractmethod
    def list_exports(self, backstores: bool = True) -> list[str]:
        """Volume ids with a target or (``backstores``) a storage object
        under our prefix, sorted. Without backstores only targets are
        listed: a backend may have to walk far more to find the others."""

    @abc.abstractmethod
    def inspect(self, volume_id: str) -> ExportState | None:
        """What exists for one volume, or None when it has no target."""

    def peek(self, volume_id: str) -> ExportState | None:
        """inspect() without the volume's lock: may see an operation half
        done, so only for a look whose findings are confirmed under the lock
        (the reconciler's steady pass). A backend whose reads are cheap
        next to its lock overrides it."""
        return self.inspect(volume_id)

    def outline(self, volume_id: str) -> ExportOutline | None:
        """peek() reduced to what decides access; None when there is no
        target. A backend whose full read is costly reads less."""
        state = self.peek(volume_id)
        return ExportOutline.of(state) if state else None

    def outline_drift(self, volume_id: str, initiators: set[str]) -> list[Drift]:
        """What differs in the outline (read without the lock, as peek())
        from an export granted to exactly ``initiators``."""
        return compute_outline_drift(volume_id, initiators, self.outline(volume_id))

    def drift(self, spec: ExportSpec, grants: list[Grant], *,
              peek: bool = False) -> list[Drift]:
        """Everything that differs from the desired export and grants
        (``peek``: read without the volume's lock, see peek())."""
        found = self.peek(spec.volume_id) if peek else self.inspect(spec.volume_id)
        return compute_drift(spec, grants, found)


def compute_drift(spec: ExportSpec, grants: list[Grant],
                  found: ExportState | None) -> list[Drift]:
    vid = spec.volume_id
    if found is None:
        return [Drift(vid, "target-missing", "no target for this volume")]
    out: list[Drift] = []
    for name, want in SECURE_TPG_ATTRIBUTES.items():
        have = found.tpg_attributes.get(name)
        if have != want:
            out.append(Drift(vid, "tpg-attribute", f"{name} is {have}, want {want}"))
    if found.auth_method != AUTH_METHOD:
        out.append(Drift(vid, "tpg-auth-method", f"AuthMethod is {found.auth_method}, "
                                                 f"want {AUTH_METHOD}"))
    if not found.tpg_enabled:
        out.append(Drift(vid, "tpg-disabled", "TPG 1 is not enabled"))
    for portal in sorted(set(spec.portals) - found.portals, key=str):
        out.append(Drift(vid, "portal-missing", str(portal)))
    for portal in sorted(found.portals - set(spec.portals), key=str):
        out.append(Drift(vid, "portal-extra", str(portal)))
    lun0, backing = found.lun0_backing, spec.backing
    if lun0 is None:
        out.append(Drift(vid, "lun-missing", "LUN 0 is missing"))
    elif (lun0.kind, lun0.path) != (backing.kind, backing.path):
        out.append(Drift(vid, "lun-backing", f"LUN 0 is {lun0.kind.value}:{lun0.path}, "
                         f"want {backing.kind.value}:{backing.path}"))
    elif backing.kind is BackingKind.FILE and lun0.size != backing.size:
        out.append(Drift(vid, "lun-size", f"LUN 0 has {lun0.size} bytes, want {backing.size}"))
    elif lun0.direct_io != backing.direct_io:
        out.append(Drift(vid, "lun-io", f"LUN 0 does {_io(lun0)} I/O, want {_io(backing)}"))
    if found.unit_serial is not None and found.unit_serial != unit_serial(vid):
        out.append(Drift(vid, "unit-serial",
                         f"serial is {found.unit_serial}, want {unit_serial(vid)}"))
    out.extend(_acl_drift(vid, grants, found))
    return out


def _io(backing: Backing) -> str:
    return "direct" if backing.direct_io else "page-cache"


def compute_outline_drift(vid: str, initiators: set[str],
                          found: ExportOutline | None) -> list[Drift]:
    if found is None:
        return [Drift(vid, "target-missing", "no target for this volume")]
    out = [Drift(vid, "tpg-attribute", f"{name} is {found.access_attributes.get(name)}, "
                 f"want {SECURE_TPG_ATTRIBUTES[name]}")
           for name in ACCESS_TPG_ATTRIBUTES
           if found.access_attributes.get(name) != SECURE_TPG_ATTRIBUTES[name]]
    if not found.tpg_enabled:
        out.append(Drift(vid, "tpg-disabled", "TPG 1 is not enabled"))
    if not found.lun0:
        out.append(Drift(vid, "lun-missing", "LUN 0 is missing"))
    out.extend(Drift(vid, "acl-missing", "no ACL", i) for i in sorted(initiators - found.acls))
    out.extend(Drift(vid, "acl-extra", "ACL not granted", i)
               for i in sorted(found.acls - initiators))
    return out


def _acl_drift(vid: str, grants: list[Grant], found: ExportState) -> list[Drift]:
    out: list[Drift] = []
    wanted = {g.initiator: g for g in grants}
    for initiator, grant in sorted(wanted.items()):
        acl = found.acls.get(initiator)
        if acl is None:
            out.append(Drift(vid, "acl-missing", "no ACL", initiator))
            continue
        if acl.chap is None or acl.chap.userid != grant.chap.userid \
                or acl.chap.password != grant.chap.password:
            out.append(Drift(vid, "acl-chap", "CHAP user or secret differs", initiator))
        elif (acl.chap.mutual_userid, acl.chap.mutual_password) != \
                (grant.chap.mutual_userid, grant.chap.mutual_password):
            out.append(Drift(vid, "acl-chap", "mutual CHAP differs", initiator))
        if acl.mapped_luns != {0: grant.read_only}:
            out.append(Drift(vid, "acl-mapping", f"mapped LUNs {acl.mapped_luns}, want "
                             f"{{0: {grant.read_only}}} (LUN: write protected)", initiator))
    for initiator in sorted(set(found.acls) - set(wanted)):
        out.append(Drift(vid, "acl-extra", "ACL not granted", initiator))
    return out


def check_backing(backing: Backing) -> None:
    """Refuse a backing the kernel could not open, as LIO would."""
    try:
        st = os.stat(backing.path)
    except FileNotFoundError:
        raise InvalidInput(f"backing {backing.path} does not exist") from None
    if backing.kind is BackingKind.FILE and not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"backing {backing.path} is not a regular file")
    if backing.kind is BackingKind.BLOCK and not stat.S_ISBLK(st.st_mode):
        raise InvalidInput(f"backing {backing.path} is not a block device")
