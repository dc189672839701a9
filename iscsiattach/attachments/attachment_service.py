"""The attach/detach v2 workflow (Cinder's attachments API semantics).

Every change happens under the volume's lock, is recorded in the store
before the kernel is touched (compare-and-swap on statuses), and then LIO is
converged from the store (``desired.Converger``). A failure leaves a clear
state (error_attaching / error_detaching) and LIO as the store wants it; an
attachment that was already connected is never cut off by a failed retry.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from iscsiattach import failpoints
from iscsiattach.attachments import state as st
from iscsiattach.attachments.connection import Connector, connection_info, new_chap, validate_mode
from iscsiattach.attachments.desired import Converger, connected, stored_chap
from iscsiattach.attachments.ids import parse_uuid
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.exception import Conflict, NotFound
from iscsiattach.model import ChapCredentials, validate_volume_id
from iscsiattach.store import Attachment, Store, Volume
from iscsiattach.store.db import utcnow

LOG = logging.getLogger(__name__)


class AttachmentService:
    def __init__(self, store: Store, locks: VolumeLocks, converger: Converger) -> None:
        self.store, self.locks, self.converger = store, locks, converger

    # -- queries --------------------------------------------------------------
    def show(self, attachment_id: str) -> Attachment:
        return self.store.attachment(parse_uuid(attachment_id, "attachment id"))

    def list_attachments(self, volume_id: str | None = None) -> list[Attachment]:
        return self.store.attachments(volume_id)

    # -- create / reserve -------------------------------------------------------
    def create(self, volume_id: str, instance_uuid: str | None, connector: Any = None,
               mode: str | None = None) -> tuple[Attachment, dict | None]:
        """Reserve; with a connector, reserve and connect in one call.

        ``mode`` None means "not given": the connector's "mode" then decides
        (as Cinder does), else rw.
        """
        volume_id = validate_volume_id(parse_uuid(volume_id, "volume id"))
        instance_uuid = parse_uuid(instance_uuid, "instance uuid") if instance_uuid else None
        parsed = Connector.parse(connector) if connector is not None else None
        mode = validate_mode(mode or (parsed.mode if parsed else None) or "rw")
        with self.locks.lock(volume_id):
            if parsed is not None:
                # Every refusal of the connect before the reservation is written:
                # a refused create must leave nothing behind, not even a row.
                self._check_connect(_unsaved(volume_id, instance_uuid, mode),
                                    self.store.volume(volume_id), parsed)
            att = self._reserve(volume_id, instance_uuid, mode)
            if parsed is None:
                return att, None
            try:
                return self._connect(att, parsed)
            except Exception:
                # The caller never learns this attachment's id: do not leave
                # a reservation behind that nobody can delete.
                self._discard(att.id)
                raise

    def _reserve(self, volume_id: str, instance_uuid: str | None, mode: str) -> Attachment:
        vol = self.store.volume(volume_id)
        if vol.status not in st.ATTACHABLE:
            raise Conflict(f"volume {volume_id} is {vol.status}, it cannot be attached")
        live = [a for a in self.store.attachments(volume_id) if a.status in st.LIVE]
        # A non-multiattach volume admits more reservations only from the
        # same (named) instance: a retried reservation, as Cinder allows.
        if not vol.multiattach and live and (
                instance_uuid is None or any(a.instance_uuid != instance_uuid for a in live)):
            raise Conflict(f"volume {volume_id} is already attached and is not multiattach")
        att_id = str(uuid.uuid4())
        new_status = st.volume_status_for([a.status for a in live] + [st.A_RESERVED])
        if not self.store.cas_volume(volume_id, [vol.status], status=new_status):
            raise Conflict(f"volume {volume_id} changed while reserving it; retry")
        failpoints.point("reserve.after_volume_status")
        att = self.store.add_attachment(id=att_id, volume_id=volume_id,
                                        instance_uuid=instance_uuid, status=st.A_RESERVED,
                                        attach_mode=mode)
        failpoints.point("reserve.after_attachment")
        LOG.info("attachment %s reserved volume %s", att_id, volume_id)
        return att

    # -- update (connect) -------------------------------------------------------
    def update(self, attachment_id: str, connector: Any) -> tuple[Attachment, dict]:
        parsed = Connector.parse(connector)       # bad input first: 400 before 404
        att = self.show(attachment_id)
        with self.locks.lock(att.volume_id):
            return self._connect(self.store.attachment(att.id), parsed)

    def _connect(self, att: Attachment, conn: Connector) -> tuple[Attachment, dict]:
        vol = self.store.volume(att.volume_id)
        was_connected = att.status in st.CONNECTED
        mode = self._check_connect(att, vol, conn)
        others = [a for a in connected(self.store.attachments(vol.id)) if a.id != att.id]
        chap = self._credentials(att, others, conn.initiator)
        repeat = was_connected and att.connector == conn.raw and att.chap_userid == chap.userid
        # Intent first: the store says "attaching" before the kernel changes.
        if not repeat and not self.store.cas_attachment(
                att.id, [att.status], status=att.status if was_connected else st.A_ATTACHING,
                connector=conn.raw, initiator=conn.initiator, host=conn.host,
                attach_mode=mode, chap_userid=chap.userid, chap_secret=chap.password):
            raise Conflict(f"attachment {att.id} changed while connecting it; retry")
        failpoints.point("connect.after_intent")
        self._settle_volume(vol.id)
        failpoints.point("connect.after_volume_status")
        try:
            export = self.converger.converge(self.store.volume(vol.id))
        except Exception as exc:
            if was_connected:
                # A failed retry must not cut off a host that is using the disk.
                LOG.error("attachment %s: repeated connect failed, left as is: %s", att.id, exc)
            else:
                self._fail_connect(att.id, vol.id, exc)
            raise
        failpoints.point("connect.after_converge")
        att = self.store.attachment(att.id)
        LOG.info("attachment %s connected volume %s to %s", att.id, vol.id, conn.initiator)
        return att, connection_info(export, chap, attachment_id=att.id,
                                    mode=att.attach_mode, multipath=conn.multipath)

    def _check_connect(self, att: Attachment, vol: Volume, conn: Connector) -> str:
        """Refuse a connect that must not happen; the mode it will have."""
        if att.status in st.CONNECTED and att.initiator != conn.initiator:
            raise Conflict(f"attachment {att.id} is connected to {att.initiator}; "
                           "delete it to connect another host")
        if att.status not in (st.A_RESERVED, st.A_ERROR_ATTACHING) + st.CONNECTED:
            raise Conflict(f"attachment {att.id} is {att.status}, it cannot be connected")
        if vol.status not in st.ATTACHABLE:
            raise Conflict(f"volume {vol.id} is {vol.status}, it cannot be connected")
        others = [a for a in connected(self.store.attachments(vol.id)) if a.id != att.id]
        if not vol.multiattach and any(a.initiator != conn.initiator for a in others):
            raise Conflict(f"volume {vol.id} is connected to another host and is not "
                           "multiattach")
        mode = att.attach_mode if att.status in st.CONNECTED else \
            validate_mode(conn.mode or att.attach_mode)
        for other in others:
            if other.initiator == conn.initiator and other.attach_mode != mode:
                # One initiator has one ACL: one mapping, rw or ro, not both.
                raise Conflict(f"initiator {conn.initiator} already has volume {vol.id} "
                               f"{other.attach_mode}; it cannot also attach it {mode}")
        return mode

    @staticmethod
    def _credentials(att: Attachment, others: Sequence[Attachment],
                     initiator: str) -> ChapCredentials:
        """One ACL per initiator: a second attachment from the same initiator
        gets the credentials of the first; a retry keeps its own."""
        for other in sorted(others, key=lambda a: (a.created_at, a.id)):
            if other.initiator == initiator:
                return stored_chap(other)
        if att.initiator == initiator and att.chap_secret:
            return stored_chap(att)
        return new_chap()

    def _fail_connect(self, att_id: str, volume_id: str, exc: Exception) -> None:
        LOG.error("attachment %s: connect failed: %s", att_id, exc)
        self.store.cas_attachment(att_id, [st.A_ATTACHING], status=st.A_ERROR_ATTACHING)
        self._converge_quietly(volume_id, "rollback")
        self._settle_volume(volume_id)

    def _discard(self, att_id: str) -> None:
        att = self.store.attachment(att_id)
        self.store.cas_attachment(att_id, [att.status], status=st.A_DETACHED,
                                  detached_at=utcnow())
        self._converge_quietly(att.volume_id, "discarding a failed create")
        self._settle_volume(att.volume_id)

    def _converge_quietly(self, volume_id: str, why: str) -> None:
        try:
            self.converger.converge(self.store.volume(volume_id))
        except Exception as exc:   # noqa: BLE001 - the reconciler finishes it
            LOG.error("volume %s: %s incomplete, the reconciler will finish it: %s",
                      volume_id, why, exc)

    # -- complete / delete --------------------------------------------------------
    def complete(self, attachment_id: str) -> Attachment:
        att = self.show(attachment_id)
        with self.locks.lock(att.volume_id):
            att = self.store.attachment(att.id)
            if att.status != st.A_ATTACHED and not self.store.cas_attachment(
                    att.id, [st.A_ATTACHING], status=st.A_ATTACHED, attached_at=utcnow()):
                raise Conflict(f"attachment {att.id} is {att.status}; only a connected "
                               "attachment can be completed")
            failpoints.point("complete.after_attachment")
            self._settle_volume(att.volume_id)      # also after a crash, on the retry
            LOG.info("attachment %s of volume %s completed", att.id, att.volume_id)
            return self.store.attachment(att.id)

    def delete(self, attachment_id: str) -> None:
        """Detach: the initiator's ACL goes unless another attachment of the
        volume uses it; the export goes with the last connected attachment.
        Deleting what is already gone succeeds."""
        try:
            att = self.show(attachment_id)
        except NotFound:
            LOG.info("attachment %s: already gone", attachment_id)
            return
        with self.locks.lock(att.volume_id):
            att = self.store.attachment(att.id)
            if att.status != st.A_DETACHED and not self.store.cas_attachment(
                    att.id, [att.status], status=st.A_DETACHED, detached_at=utcnow()):
                raise Conflict(f"attachment {att.id} changed while deleting it; retry")
            failpoints.point("delete.after_attachment")
            vol = self.store.volume(att.volume_id)
            self.store.cas_volume(vol.id, st.ATTACHABLE, status=st.DETACHING)
            failpoints.point("delete.after_volume_status")
            try:
                self.converger.converge(vol)
            except Exception:
                self.store.cas_attachment(att.id, [st.A_DETACHED], status=st.A_ERROR_DETACHING)
                self._settle_volume(vol.id)
                raise
            failpoints.point("delete.after_converge")
            self._settle_volume(vol.id)
            LOG.info("attachment %s of volume %s deleted", att.id, vol.id)

    def _settle_volume(self, volume_id: str) -> None:
        """Set the volume's status from its attachments (never over deleting & co)."""
        self.store.settle_volume(volume_id, st.ATTACHABLE, st.volume_status_for)


def _unsaved(volume_id: str, instance_uuid: str | None, mode: str) -> Attachment:
    """The attachment a create is about to reserve, for checks made before it exists."""
    now = utcnow()
    return Attachment(id="(new)", volume_id=volume_id, instance_uuid=instance_uuid,
                      status=st.A_RESERVED, attach_mode=mode, connector=None, initiator=None,
                      host=None, chap_userid=None, chap_secret=None, attached_at=None,
                      detached_at=None, created_at=now, updated_at=now)
