"""A mixed client load over HTTP: create, update, complete, delete, extend.

Each worker is one client: it owns the attachments it created and keeps
the set of those the daemon acknowledged ("held"); other clients never touch
them. Conflicts (409) are part of the game: several workers race for the
same volumes. When the daemon dies under a request (tools/crash-suite kills
it at random), the worker keeps that request as pending, parks, and after
the restart ``resolve()`` retries it with the semantics of crash.py.
"""
from __future__ import annotations

import random
import threading
import traceback
import uuid
from dataclasses import dataclass, field

from tests.functional.crash import LOST, connector
from tests.functional.daemon import call

MAX_SIZE_GIB = 3
INITIATORS = 6      # few initiators: attachments share ACLs on multiattach volumes


@dataclass
class Held:
    """An attachment the daemon acknowledged, and what the client was told."""
    vid: str
    inst: str
    conn: dict | None = None        # set once connected
    completed: bool = False
    told: dict | None = None        # connection_info of the last connect acknowledged
    status: str | None = None       # the status the last acknowledged change made


@dataclass
class Pending:
    op: str
    args: tuple


@dataclass
class Tally:
    ops: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)

    def count(self, op: str, status: int) -> None:
        self.ops += 1
        key = f"{op} {status}"
        self.by_status[key] = self.by_status.get(key, 0) + 1


class Worker(threading.Thread):
    OPS = ("create", "create", "reserve", "update", "complete", "delete", "delete", "extend")

    def __init__(self, n: int, token: str, vids: list[str], seed: int,
                 ops: int | None = None, down: threading.Event | None = None) -> None:
        super().__init__(name=f"load-{n}", daemon=True)
        self.n, self.token, self.vids = n, token, vids
        self.rng = random.Random(seed)
        self.ops_left, self.down = ops, down or threading.Event()
        self.held: dict[str, Held] = {}
        self.deleted: set[str] = set()          # deletes the daemon acknowledged
        self.sizes: dict[str, int] = {}         # the largest extend acknowledged, per volume
        self.pending: Pending | None = None
        self.tally = Tally()
        self.parked = threading.Event()
        self.resume = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.trace = ""

    # -- the loop -------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop.is_set() and self.ops_left != 0:
                if self.down.is_set() or self.pending is not None:
                    self._park()
                    continue
                self._one()
                if self.ops_left is not None:
                    self.ops_left -= 1
        except BaseException as exc:       # noqa: BLE001 - reported by the driver
            self.error = exc
            self.trace = traceback.format_exc(limit=8)
        finally:
            self.parked.set()

    def _park(self) -> None:
        self.parked.set()
        self.resume.wait()
        self.resume.clear()
        self.parked.clear()

    def _call(self, op: str, method: str, path: str, body=None, args=()):
        try:
            status, data = call(method, path, body, self.token)
        except LOST:
            self.pending = Pending(op, args)
            return None, None
        if status == 200 and data is None:
            # A reply torn by the kill (status line, no headers, no body):
            # as good as lost, whatever the status said.
            self.pending = Pending(op, args)
            return None, None
        self.tally.count(op, status)
        return status, data

    def _unexpected(self, op: str, status, data) -> None:
        self.tally.unexpected.append(f"worker {self.n} {op}: {status} {data}")

    def _one(self) -> None:
        op = self.rng.choice(self.OPS)
        getattr(self, f"_op_{op}")()

    # -- operations -------------------------------------------------------------
    def _conn(self) -> dict:
        return connector(f"w{self.rng.randrange(INITIATORS)}")

    def _op_create(self, reserve_only: bool = False) -> None:
        vid, inst = self.rng.choice(self.vids), str(uuid.uuid4())
        conn = None if reserve_only else self._conn()
        body = {"volume_uuid": vid, "instance_uuid": inst}
        if conn:
            body["connector"] = conn
        status, data = self._call("create", "POST", "/attachments", {"attachment": body},
                                  (vid, inst, conn))
        if status == 200:
            att = data["attachment"]
            self.held[att["id"]] = Held(vid, inst, conn,
                                        told=att["connection_info"] if conn else None,
                                        status="attaching" if conn else "reserved")
        elif status not in (None, 409):
            self._unexpected("create", status, data)

    def _op_reserve(self) -> None:
        self._op_create(reserve_only=True)

    def _pick(self, want) -> str | None:
        ids = [i for i, h in self.held.items() if want(h)]
        return self.rng.choice(ids) if ids else None

    def _op_update(self) -> None:
        att = self._pick(lambda h: h.conn is None)
        if att is None:
            return self._op_create(reserve_only=True)
        conn = self._conn()
        status, data = self._call("update", "PUT", f"/attachments/{att}",
                                  {"attachment": {"connector": conn}}, (att, conn))
        if status == 200:
            self._connected(att, conn, data)
        elif status not in (None, 409):
            self._unexpected("update", status, data)

    def _op_complete(self) -> None:
        att = self._pick(lambda h: h.conn is not None and not h.completed)
        if att is None:
            return
        status, data = self._call("complete", "POST", f"/attachments/{att}/action",
                                  {"os-complete": None}, (att,))
        if status == 204:
            self._completed(att)
        elif status is not None:
            self._unexpected("complete", status, data)

    def _op_delete(self) -> None:
        att = self._pick(lambda h: True)
        if att is None:
            return
        status, data = self._call("delete", "DELETE", f"/attachments/{att}", None, (att,))
        if status == 200:
            self._deleted(att)
        elif status is not None:
            self._unexpected("delete", status, data)

    def _op_extend(self) -> None:
        vid = self.rng.choice(self.vids)
        status, data = self._call("show", "GET", f"/volumes/{vid}")
        if status != 200:
            return
        size = data["volume"]["size"] + 1
        if size > MAX_SIZE_GIB:
            return
        status, data = self._call("extend", "POST", f"/volumes/{vid}/action",
                                  {"os-extend": {"new_size": size}}, (vid, size))
        # 409: extending or being changed by another client; 400: someone else
        # extended it further meanwhile.
        if status == 202:
            self._extended(vid, size)
        elif status not in (None, 400, 409):
            self._unexpected("extend", status, data)

    # -- what the client was told ------------------------------------------------
    def _connected(self, att: str, conn: dict, data: dict) -> None:
        h = self.held[att]
        h.conn, h.told, h.status = conn, data["attachment"]["connection_info"], "attaching"

    def _completed(self, att: str) -> None:
        self.held[att].completed, self.held[att].status = True, "attached"

    def _deleted(self, att: str) -> None:
        del self.held[att]
        self.deleted.add(att)

    def _extended(self, vid: str, size: int) -> None:
        self.sizes[vid] = max(size, self.sizes.get(vid, 0))

    # -- after a restart ------------------------------------------------------------
    def resolve(self) -> None:
        """Retry the request the daemon died under (crash.py's semantics)."""
        p, self.pending = self.pending, None
        if p is None:
            return
        if p.op == "create":
            vid, inst, conn = p.args
            status, data = call("GET", f"/attachments?volume_id={vid}", token=self.token)
            mine = [a for a in data["attachments"] if a["instance"] == inst]
            if len(mine) > 1:
                self._unexpected("create retry", "several", mine)
            for a in mine:
                # Found: the create committed. Connect it as asked, keep it.
                self.held[a["id"]] = Held(vid, inst)
                if conn:
                    s, d = call("PUT", f"/attachments/{a['id']}",
                                {"attachment": {"connector": conn}}, self.token)
                    if s == 200:
                        self._connected(a["id"], conn, d)
                    elif s != 409:      # 409: another host got the volume meanwhile
                        self._unexpected("create retry (update)", s, d)
        elif p.op == "update":
            att, conn = p.args
            s, d = call("PUT", f"/attachments/{att}", {"attachment": {"connector": conn}},
                        self.token)
            if s == 200:
                self._connected(att, conn, d)
            elif s != 409:
                self._unexpected("update retry", s, d)
        elif p.op == "complete":
            att, = p.args
            s, d = call("POST", f"/attachments/{att}/action", {"os-complete": None},
                        self.token)
            if s == 204:
                self._completed(att)
            else:
                self._unexpected("complete retry", s, d)
        elif p.op == "delete":
            att, = p.args
            s, d = call("DELETE", f"/attachments/{att}", None, self.token)
            if s == 200:
                self._deleted(att)
            else:
                self._unexpected("delete retry", s, d)
        elif p.op == "extend":
            vid, size = p.args
            s, d = call("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": size}},
                        self.token)
            if s == 202:
                self._extended(vid, size)
            elif s not in (400, 409):
                self._unexpected("extend retry", s, d)


def held_ids(workers: list[Worker]) -> set[str]:
    return {a for w in workers for a in w.held}


def acknowledged_problems(workers: list[Worker], outside) -> list[str]:
    """Every change the daemon acknowledged is still in effect, field by
    field against what the client was told: each held attachment's volume,
    instance and status, and for a connected one its credentials in the
    store and in LIO's ACL (the host can still log in with them); each
    acknowledged delete stays deleted; each acknowledged extend's size (or a
    later one) is the volume's, its file's and its LUN's."""
    out: list[str] = []
    store = outside.svc.store
    for w in workers:
        for att_id, h in w.held.items():
            out += _held_problems(outside, store, att_id, h)
        for att_id in sorted(w.deleted):
            row = _row(store, att_id)
            if row is not None and row.status != "detached":
                out.append(f"attachment {att_id}: deleted (acknowledged) but {row.status}")
        for vid, size in sorted(w.sizes.items()):
            vol = store.volume(vid)
            if vol.size_gib < size:
                out.append(f"volume {vid}: extended to {size} GiB (acknowledged), "
                           f"now {vol.size_gib}")
    return out


def _row(store, att_id: str):
    try:
        return store.attachment(att_id)
    except Exception:       # noqa: BLE001 - NotFound
        return None


def _held_problems(outside, store, att_id: str, h: Held) -> list[str]:
    row = _row(store, att_id)
    if row is None:
        return [f"attachment {att_id} lost"]
    out = []
    told = {"volume_id": h.vid, "instance": h.inst, "status": h.status}
    have = {"volume_id": row.volume_id, "instance": row.instance_uuid, "status": row.status}
    for key, want in told.items():
        if want is not None and have[key] != want:
            out.append(f"attachment {att_id}: {key} is {have[key]}, the client was told {want}")
    if h.conn is None or h.told is None:
        return out
    info = h.told
    if row.initiator != h.conn["initiator"]:
        out.append(f"attachment {att_id}: initiator {row.initiator}, told {h.conn['initiator']}")
    if (row.chap_userid, row.chap_secret.reveal() if row.chap_secret else None) != \
            (info["auth_username"], info["auth_password"]):
        out.append(f"attachment {att_id}: stored CHAP differs from what the client was told")
    state = outside.lio.inspect(h.vid)
    acl = state.acls.get(h.conn["initiator"]) if state else None
    if state is None or state.target_iqn != info["target_iqn"] or info["target_lun"] != 0:
        out.append(f"attachment {att_id}: target {info['target_iqn']} lun {info['target_lun']}"
                   " told, not what LIO holds")
    elif acl is None or acl.chap is None or (acl.chap.userid, acl.chap.password.reveal()) != \
            (info["auth_username"], info["auth_password"]):
        out.append(f"attachment {att_id}: LIO's ACL for {h.conn['initiator']} would refuse "
                   "the credentials the client was told")
    return out
