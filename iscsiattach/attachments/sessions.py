"""Who is logged in: the target's sessions joined with the store's rows.

The target says which initiator is logged in to which volume's target, from
where, in what state; the store says which attachments that initiator holds
there and the CHAP user it was given. LIO keeps no login time, so "seen
since" is when this daemon first saw that session (by the target's session
id): a daemon restart starts it again, and a session that existed before it
is dated by the first look after.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from iscsiattach.attachments.desired import connected, grants_for
from iscsiattach.attachments.ids import parse_uuid
from iscsiattach.store import Attachment, Store
from iscsiattach.targets import TargetBackend


@dataclass(frozen=True)
class Session:
    volume_id: str
    target_iqn: str
    initiator: str
    addresses: tuple[str, ...]          # each connection's initiator address
    auth_username: str | None           # the CHAP user the store gave this initiator
    session_id: int                     # the target's
    state: str
    attachment_ids: tuple[str, ...]     # this initiator's connected attachments
    seen_since: dt.datetime


class SessionLister:
    def __init__(self, store: Store, target: TargetBackend) -> None:
        self.store, self.target = store, target
        self._seen: dict[tuple[str, str, int], dt.datetime] = {}
        self._lock = threading.Lock()

    def list_sessions(self, volume_id: str | None = None) -> list[Session]:
        """Sessions on one volume's target, or on every exported volume's."""
        if volume_id is not None:
            vid = parse_uuid(volume_id, "volume id")
            return self._volume(vid, self.store.attachments(vid))
        return [s for found in self.by_volume().values() for s in found]

    def by_volume(self) -> dict[str, list[Session]]:
        """Every exported volume (one with a connected attachment) and its
        sessions, none included."""
        rows: dict[str, list[Attachment]] = {}
        for att in connected(self.store.attachments()):
            rows.setdefault(att.volume_id, []).append(att)
        found = {vid: self._volume(vid, atts) for vid, atts in sorted(rows.items())}
        self._forget_all_but([s for sessions in found.values() for s in sessions])
        return found

    def for_attachment(self, att: Attachment) -> list[Session]:
        """The sessions of the attachment's own initiator on its volume."""
        if not att.initiator or att not in connected([att]):
            return []
        return [s for s in self._volume(att.volume_id, self.store.attachments(att.volume_id))
                if s.initiator == att.initiator]

    def _volume(self, volume_id: str, rows: list[Attachment]) -> list[Session]:
        users = {g.initiator: g.chap.userid for g in grants_for(rows)}
        iqn = self.target.target_iqn(volume_id)
        out = []
        for ts in self.target.sessions(volume_id):
            atts = tuple(sorted(a.id for a in connected(rows) if a.initiator == ts.initiator))
            out.append(Session(volume_id, iqn, ts.initiator, ts.addresses,
                               users.get(ts.initiator), ts.session_id, ts.state, atts,
                               self._first_seen((volume_id, ts.initiator, ts.session_id))))
        return out

    def _first_seen(self, key: tuple[str, str, int]) -> dt.datetime:
        with self._lock:
            return self._seen.setdefault(key, dt.datetime.now(dt.UTC))

    def _forget_all_but(self, found: list[Session]) -> None:
        """After a look at every volume: sessions not seen are gone."""
        keep = {(s.volume_id, s.initiator, s.session_id) for s in found}
        with self._lock:
            for key in set(self._seen) - keep:
                del self._seen[key]
