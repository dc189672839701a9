"""What LIO must look like for one volume, derived from the store, and the
one routine that makes it so. Connect, delete, rollback and the reconciler
all use it: the store says what is wanted, this converges the kernel.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from iscsiattach import failpoints
from iscsiattach.attachments.state import CONNECTED
from iscsiattach.exception import Conflict, InvalidInput
from iscsiattach.model import Backing, ChapCredentials, ExportSpec, Grant, Portal
from iscsiattach.store import Attachment, Store, Volume
from iscsiattach.targets import Drift, TargetBackend
from iscsiattach.volumes.base import VolumeBackend

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Desired:
    spec: ExportSpec | None        # None: the volume must not be exported
    grants: list[Grant]


def connected(attachments: list[Attachment]) -> list[Attachment]:
    return [a for a in attachments if a.status in CONNECTED and a.initiator and a.chap_secret]


def stored_chap(att: Attachment) -> ChapCredentials:
    """The CHAP credentials an attachment was given when it connected."""
    if att.chap_userid is None or att.chap_secret is None:
        raise InvalidInput(f"attachment {att.id} has no CHAP credentials")
    return ChapCredentials(att.chap_userid, att.chap_secret)


def stored_location(volume: Volume) -> str:
    """Where the volume's storage is; Conflict while it has none yet."""
    if not volume.location:
        raise Conflict(f"volume {volume.id} has no storage yet ({volume.status})")
    return volume.location


def grants_for(attachments: list[Attachment]) -> list[Grant]:
    """One grant per initiator. Attachments from one initiator share its ACL
    and credentials; the mapping is read-only only if all of them are."""
    by_initiator: dict[str, list[Attachment]] = {}
    for a in connected(attachments):
        assert a.initiator is not None      # connected() keeps only those with one
        by_initiator.setdefault(a.initiator, []).append(a)
    grants = []
    for initiator, atts in sorted(by_initiator.items()):
        first = min(atts, key=lambda a: (a.created_at, a.id))
        grants.append(Grant(initiator, stored_chap(first),
                            read_only=all(a.attach_mode == "ro" for a in atts)))
    return grants


class Converger:
    def __init__(self, store: Store, target: TargetBackend, volume_backend: VolumeBackend,
                 portals: tuple[Portal, ...]) -> None:
        self.store, self.target, self.portals = store, target, portals
        self.volume_backend = volume_backend

    def other_locations(self, volume_id: str) -> dict[str, str]:
        """Volume id -> stored location of every other volume of the backend,
        for a backend that refuses a device another volume uses; {} (and no
        store read) for the others."""
        if not self.volume_backend.needs_other_locations:
            return {}
        return {v.id: v.location for v in self.store.volumes()
                if v.id != volume_id and v.backend == self.volume_backend.name and v.location}

    def check_exportable(self, volume: Volume) -> None:
        """Refuse an export of what the volume's location leads to now (a
        registered device may since be mounted, or be another disk after a
        reboot). Before each export is made or repaired; not on a drift
        comparison, which must stay cheap."""
        self.volume_backend.check_exportable(stored_location(volume),
                                             self.other_locations(volume.id))

    def backing(self, volume: Volume) -> Backing:
        return self.volume_backend.backing(stored_location(volume), volume.size_gib)

    def desired(self, volume: Volume, attachments: list[Attachment] | None = None) -> Desired:
        """What LIO should hold for ``volume``, from ``attachments`` (its rows,
        any status) or, when not given, its rows read now."""
        rows = self.store.attachments(volume.id) if attachments is None else attachments
        grants = grants_for(rows)
        if not grants:
            return Desired(None, [])
        return Desired(ExportSpec(volume.id, self.backing(volume), self.portals), grants)

    def drift(self, volume: Volume, attachments: list[Attachment] | None = None,
              *, peek: bool = False, outline: bool = False) -> list[Drift]:
        """How LIO differs from what the store wants. ``peek``: LIO read
        without the volume's lock, for a look that a locked one confirms;
        ``outline``: only what decides access (targets.ExportOutline)."""
        rows = self.store.attachments(volume.id) if attachments is None else attachments
        if outline:
            initiators = {a.initiator for a in connected(rows) if a.initiator}
            if initiators:
                return self.target.outline_drift(volume.id, initiators)
            return self._export_extra(volume, peek)
        want = self.desired(volume, rows)
        if want.spec is None:
            return self._export_extra(volume, peek)
        return self.target.drift(want.spec, want.grants, peek=peek)

    def _export_extra(self, volume: Volume, peek: bool) -> list[Drift]:
        there = self.target.peek_exists if peek else self.target.exists
        if not there(volume.id):
            return []
        return [Drift(volume.id, "export-extra", "exported with no connected attachment")]

    def restore(self, volume: Volume, attachments: list[Attachment]) -> bool:
        """Export a volume of which LIO holds nothing (a restore after a
        reboot) from its store rows, without reading LIO first; True if an
        export was wanted. Should any of it be there after all, converge."""
        grants = grants_for(attachments)
        if not grants:
            return False
        spec = ExportSpec(volume.id, self.backing(volume), self.portals)
        self.check_exportable(volume)
        if not self.target.restore_export(spec, grants):
            LOG.info("volume %s: already in LIO; converging it instead", volume.id)
            self.converge(volume)
        return True

    def converge(self, volume: Volume):
        """Make LIO match the store for one volume; returns the ExportInfo or None.

        Access is taken away first, in a step of its own: a failure to build
        or repair the export must never leave a detached host its ACL.
        """
        want = self.desired(volume)
        wanted = {g.initiator for g in want.grants}
        state = self.target.inspect(volume.id)
        for initiator in sorted(set(state.acls) - wanted if state else ()):
            LOG.info("volume %s: removing ACL of %s", volume.id, initiator)
            self.target.deauthorize(volume.id, initiator)
            failpoints.point("converge.after_deauthorize")
        if want.spec is None:
            if self.target.unexport(volume.id):
                LOG.info("volume %s: export removed (no connected attachment)", volume.id)
                failpoints.point("converge.after_unexport")
            return None
        self.check_exportable(volume)
        info = self.target.export(want.spec)
        failpoints.point("converge.after_export")
        for grant in want.grants:
            self.target.authorize(volume.id, grant)
            failpoints.point("converge.after_authorize")
        return info
