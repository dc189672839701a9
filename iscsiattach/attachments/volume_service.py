"""Volumes: create, list, show, extend, delete, over a volume backend."""
from __future__ import annotations

import logging
import uuid
from typing import Any

from iscsiattach import failpoints
from iscsiattach.attachments import state as st
from iscsiattach.attachments.desired import Converger, connected, stored_location
from iscsiattach.attachments.ids import parse_uuid
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.exception import Conflict, InvalidInput
from iscsiattach.model import BackingKind
from iscsiattach.store import Store, Volume
from iscsiattach.targets import TargetBackend
from iscsiattach.volumes.base import VolumeBackend, validate_size_gib

LOG = logging.getLogger(__name__)
MAX_NAME = 255


def validate_name(name: Any) -> str:
    if name is None:
        return ""
    if not isinstance(name, str) or len(name) > MAX_NAME or \
            any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput(f"invalid volume name {name!r}: at most {MAX_NAME} printable "
                           "characters")
    return name


class VolumeService:
    def __init__(self, store: Store, locks: VolumeLocks, converger: Converger,
                 target: TargetBackend, volume_backend: VolumeBackend,
                 max_size_gib: int = 16384) -> None:
        self.store, self.locks, self.converger = store, locks, converger
        self.target, self.volume_backend = target, volume_backend
        self.max_size_gib = max_size_gib

    def show(self, volume_id: str) -> Volume:
        return self.store.volume(parse_uuid(volume_id, "volume id"))

    def backstore(self, vol: Volume) -> str | None:
        """How LIO serves the volume: "iblock", "fileio-direct" or
        "fileio-page-cache"; None while it has no storage yet."""
        if not vol.location:
            return None
        backing = self.converger.backing(vol)
        if backing.kind is BackingKind.BLOCK:
            return "iblock"
        return "fileio-direct" if backing.direct_io else "fileio-page-cache"

    def list_volumes(self) -> list[Volume]:
        return self.store.volumes()

    def create(self, size_gib: Any, name: Any = None, multiattach: Any = False,
               source: str | None = None) -> Volume:
        size = validate_size_gib(size_gib, self.max_size_gib)
        name = validate_name(name)
        if not isinstance(multiattach, bool):
            raise InvalidInput(f"multiattach must be true or false, not {multiattach!r}")
        vid = str(uuid.uuid4())
        location = self.volume_backend.location_for(vid, source)
        with self.locks.lock(vid):
            # Intent first, with the location: a crash while provisioning
            # leaves a "creating" row the reconciler can finish or clean up.
            self.store.add_volume(id=vid, name=name, size_gib=size,
                                  backend=self.volume_backend.name, location=location,
                                  multiattach=multiattach, status=st.CREATING)
            failpoints.point("volume_create.after_intent")
            try:
                # The others are read after our intent is recorded: of two
                # creates of one device at once, the later reader sees the
                # earlier's row, so at most one of them registers it.
                made = self.volume_backend.create(vid, size, source,
                                                  others=self.converger.other_locations(vid))
            except Exception:
                self.store.remove_volume(vid)     # nothing was made: nothing to keep
                raise
            failpoints.point("volume_create.after_backend")
            if not self.store.cas_volume(vid, [st.CREATING], status=st.AVAILABLE,
                                         location=made.location, size_gib=made.size_gib):
                raise Conflict(f"volume {vid} changed while it was being created")
        LOG.info("volume %s created (%d GiB, %s)", vid, made.size_gib,
                 self.volume_backend.name)
        return self.store.volume(vid)

    def extend(self, volume_id: str, new_size_gib: Any) -> Volume:
        vol = self.show(volume_id)
        size = validate_size_gib(new_size_gib, self.max_size_gib)
        with self.locks.lock(vol.id):
            vol = self.store.volume(vol.id)
            if size < vol.size_gib:
                raise InvalidInput(f"new size {size} GiB must be larger than {vol.size_gib} GiB")
            if size == vol.size_gib and vol.status != st.EXTENDING:
                # A retry after a timeout: done already; make sure the LUN knows.
                self.converger.converge(vol)
                return vol
            if vol.status not in (st.AVAILABLE, st.RESERVED, st.ATTACHING, st.IN_USE):
                raise Conflict(f"volume {vol.id} is {vol.status}, it cannot be extended")
            if not self.store.cas_volume(vol.id, [vol.status], status=st.EXTENDING):
                raise Conflict(f"volume {vol.id} changed while extending it; retry")
            failpoints.point("volume_extend.after_intent")
            try:
                made = self.volume_backend.extend(vol.id, stored_location(vol), size,
                                                  others=self.converger.other_locations(vol.id))
                failpoints.point("volume_extend.after_backend")
                self.store.cas_volume(vol.id, [st.EXTENDING], size_gib=made.size_gib)
                failpoints.point("volume_extend.after_size")
                # The LUN picks up the new size so a connected host can rescan.
                self.converger.converge(self.store.volume(vol.id))
            finally:
                self._settle(vol.id)
            LOG.info("volume %s extended to %d GiB", vol.id, size)
            return self.store.volume(vol.id)

    def delete(self, volume_id: str) -> None:
        vol = self.show(volume_id)
        with self.locks.lock(vol.id):
            vol = self.store.volume(vol.id)
            live = [a for a in self.store.attachments(vol.id) if a.status in st.LIVE]
            if live or connected(self.store.attachments(vol.id)):
                raise Conflict(f"volume {vol.id} has attachments; delete them first")
            if vol.status not in (st.AVAILABLE, st.ERROR, st.DELETING) or not \
                    self.store.cas_volume(vol.id, [vol.status], status=st.DELETING):
                raise Conflict(f"volume {vol.id} is {vol.status}, it cannot be deleted")
            failpoints.point("volume_delete.after_intent")
            self.finish_delete(vol)

    def finish_delete(self, vol: Volume) -> None:
        """Remove export, data and record; safe to repeat after a crash."""
        self.target.unexport(vol.id)
        failpoints.point("volume_delete.after_unexport")
        if vol.location:
            self.volume_backend.delete(vol.id, vol.location)
            failpoints.point("volume_delete.after_backend")
        self.store.remove_volume(vol.id)
        LOG.info("volume %s deleted", vol.id)

    def _settle(self, volume_id: str) -> None:
        self.store.settle_volume(volume_id, [st.EXTENDING], st.volume_status_for)
