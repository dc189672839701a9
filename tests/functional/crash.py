"""Crash consistency against the real daemon: scenarios and invariants.

A scenario arms one fault point (iscsiattach.failpoints), sets up what the
request needs, sends the request that reaches the point, sees the daemon
die by SIGKILL there, restarts it unarmed and retries as a client would,
then checks from outside the daemon that the store and LIO agree and
nothing was lost or leaked. tests/functional/test_crash.py runs each
scenario once; tools/crash-suite runs them many times plus random kills
during a load (tests/functional/crash_load.py).

Retry semantics, per request (what a client that lost the reply does):
- volume create: the id never reached the client; it lists volumes by the
  name it chose, uses the one it finds, else creates again.
- attachment create (with or without connector): it lists the volume's
  attachments and looks for its instance uuid; it connects the one it finds
  (update with the same connector), else creates again.
- update, complete, delete, extend, volume delete: retried as they were;
  a volume delete that finds the volume gone (404) is done.
- reconcile (at start): the next start is the retry.
- restore (at start, LIO empty of ours as after a reboot): the same; the
  second start finds a partial LIO, so it converges instead of restoring.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iscsiattach.attachments import state as st
from iscsiattach.attachments.connection import new_chap
from iscsiattach.attachments.wiring import Services, lock_dir, wire_services
from iscsiattach.model import ExportSpec, Grant, Portal
from iscsiattach.targets.lio import LioBackend
from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.file import FileBackend
from tests.functional.conftest import PREFIX
from tests.functional.daemon import Daemon, call
from tests.support.blockio import checksum_io

PORTALS = (Portal("127.0.0.1"),)
LOST = (OSError, http.client.HTTPException)   # the reply never came: the daemon died


def connector(tag: str) -> dict:
    return {"initiator": f"iqn.2004-10.com.example:crash-{tag}", "ip": "127.0.0.1",
            "host": f"host-{tag}", "platform": "x86_64", "os_type": "linux2",
            "multipath": False}


class Outside:
    """The daemon's state dir, store and LIO seen from another process."""

    def __init__(self, state: Path, volumes_dir: Path) -> None:
        self.state, self.volumes_dir = state, volumes_dir
        self.lio = LioBackend(prefix=PREFIX, lock_path=lock_dir(str(state)))
        self.svc: Services = wire_services(str(state), self.lio, FileBackend(str(volumes_dir)),
                                           PORTALS)

    # -- setups, done directly with the services (inert fault points here) ----
    def volume(self, multiattach: bool = False) -> str:
        return self.svc.volume_service.create(1, f"crash-{uuid.uuid4().hex[:8]}", multiattach).id

    def attach(self, vid: str, tag: str, complete: bool = True) -> str:
        att, _ = self.svc.attachment_service.create(vid, str(uuid.uuid4()), connector(tag))
        if complete:
            self.svc.attachment_service.complete(att.id)
        return att.id

    def orphan_export(self) -> str:
        """An export of ours that the store does not know (as a crash could leave)."""
        vid = str(uuid.uuid4())
        path = self.volumes_dir / f"orphan-{vid}.img"
        with open(path, "wb") as f:
            f.truncate(GIB)
        backing = FileBackend(str(self.volumes_dir))._provisioned(str(path), GIB).backing
        self.lio.export(ExportSpec(vid, backing, PORTALS))
        self.lio.authorize(vid, Grant(connector("orphan")["initiator"], new_chap()))
        return vid

    def empty_lio(self) -> int:
        """Remove every export of ours (our prefix only), as a reboot does."""
        vids = self.lio.list_exports()
        for vid in vids:
            self.lio.unexport(vid)
        return len(vids)

    # -- invariants ------------------------------------------------------------
    def problems(self, attachments: set[str] = frozenset(),
                 stray_files: set[str] = frozenset()) -> list[str]:
        """Everything that is wrong, as sentences; [] when all is well.

        ``attachments``: ids the client holds (acknowledged, not deleted):
        each must still be there. ``stray_files``: names in the volumes
        directory that are not volumes of this daemon and may stay.
        """
        out: list[str] = []
        store = self.svc.store
        vols = {v.id: v for v in store.volumes()}
        for vol in vols.values():
            atts = store.attachments(vol.id)
            if vol.status not in st.ATTACHABLE + (st.AVAILABLE, st.ERROR):
                out.append(f"volume {vol.id} left {vol.status}")
            elif vol.status in st.ATTACHABLE:
                want = st.volume_status_for(a.status for a in atts)
                if vol.status != want:
                    out.append(f"volume {vol.id} is {vol.status}, its attachments say {want}")
            if vol.status not in (st.CREATING, st.DELETING):
                out += [f"drift: {d}" for d in self.svc.converger.drift(vol)]
            wanted = {a.initiator for a in atts if a.status in st.CONNECTED}
            state = self.lio.inspect(vol.id)
            for acl in sorted(set(state.acls) - wanted if state else ()):
                out.append(f"ACL {acl} on volume {vol.id} without a connected attachment")
            if vol.location and not os.path.exists(vol.location):
                out.append(f"volume {vol.id}: its file {vol.location} is missing")
        for vid in self.lio.list_exports():
            if vid not in vols:
                out.append(f"export of volume {vid} that the store does not know")
        for att_id in sorted(attachments):
            try:
                att = store.attachment(att_id)
            except Exception:       # noqa: BLE001 - NotFound: lost
                out.append(f"attachment {att_id} lost")
                continue
            if att.status == st.A_DETACHED:
                out.append(f"attachment {att_id} detached though nobody deleted it")
        locations = {os.path.basename(v.location) for v in vols.values() if v.location}
        if self.volumes_dir.is_dir():
            for name in sorted(os.listdir(self.volumes_dir)):
                if name not in locations and name not in stray_files and \
                        not name.startswith("orphan-"):
                    out.append(f"file {name} in the volumes directory belongs to no volume")
        return out


@dataclass
class Ctx:
    """What a scenario works with."""
    daemon: Daemon
    outside: Outside
    held: set[str] = field(default_factory=set)      # attachments the client holds

    @property
    def token(self) -> str:
        return self.daemon.token

    def call(self, method: str, path: str, body=None):
        return call(method, path, body, self.token)


# -- requests and their retries ------------------------------------------------
def create_attachment(ctx: Ctx, vid: str, inst: str, conn: dict | None):
    body = {"volume_uuid": vid, "instance_uuid": inst}
    if conn:
        body["connector"] = conn
    return ctx.call("POST", "/attachments", {"attachment": body})


def retry_create_attachment(ctx: Ctx, vid: str, inst: str, conn: dict | None) -> str:
    """Find the attachment the lost reply was about; connect it, or create again."""
    status, body = ctx.call("GET", f"/attachments/detail?volume_id={vid}")
    assert status == 200, body
    mine = [a for a in body["attachments"] if a["instance"] == inst]
    assert len(mine) <= 1, f"one create made {len(mine)} attachments: {mine}"
    if not mine:
        status, body = create_attachment(ctx, vid, inst, conn)
        assert status == 200, body
        att = body["attachment"]
    elif conn:
        status, body = ctx.call("PUT", f"/attachments/{mine[0]['id']}",
                                {"attachment": {"connector": conn}})
        assert status == 200, body
        att = body["attachment"]
    else:
        att = mine[0]
    if conn:
        check_connection_info(ctx, att)
    return att["id"]


def check_connection_info(ctx: Ctx, att: dict) -> None:
    """The credentials handed out are the ones LIO holds for this initiator."""
    info = att["connection_info"]
    stored = ctx.outside.svc.store.attachment(att["id"])
    assert info["auth_username"] == stored.chap_userid
    assert info["auth_password"] == stored.chap_secret.reveal()
    assert ctx.outside.lio.inspect(stored.volume_id).acls[stored.initiator] is not None


def retry_create_volume(ctx: Ctx, name: str) -> str:
    status, body = ctx.call("GET", "/volumes/detail")
    assert status == 200, body
    mine = [v for v in body["volumes"] if v["name"] == name]
    assert len(mine) <= 1, mine
    if mine:
        assert mine[0]["status"] == "available", mine[0]
        return mine[0]["id"]
    status, body = ctx.call("POST", "/volumes", {"volume": {"size": 1, "name": name}})
    assert status == 202, body
    return body["volume"]["id"]


def expect(ctx: Ctx, method: str, path: str, body=None, ok=(200, 202, 204)) -> dict | None:
    status, data = ctx.call(method, path, body)
    assert status in ok, (method, path, status, data)
    return data


def cleanup(ctx: Ctx, vids: list[str]) -> None:
    """Delete everything a scenario made, through the API (it must converge)."""
    for vid in vids:
        status, body = ctx.call("GET", f"/attachments?volume_id={vid}")
        assert status == 200, body
        for att in body["attachments"]:
            expect(ctx, "DELETE", f"/attachments/{att['id']}")
            ctx.held.discard(att["id"])
        expect(ctx, "DELETE", f"/volumes/{vid}", ok=(202, 404))


# -- scenarios ----------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """``run(ctx, crash)``: sets up, calls ``crash(send, prepare)`` which runs
    ``prepare`` (if any) with the daemon down, arms the point (killing at its
    ``hit``th pass), sends the request and restarts unarmed after the kill;
    then retries and returns the volumes to check and clean up."""
    point: str
    name: str
    run: Callable
    hit: int = 1


def _crash_request(ctx: Ctx, send: Callable[[], object]) -> None:
    try:
        got = send()
    except LOST:
        return
    raise AssertionError(f"the request was answered ({got}); the daemon should have died")


def s_create_with_connector(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    inst, conn = str(uuid.uuid4()), connector(uuid.uuid4().hex[:8])
    crash(lambda: create_attachment(ctx, vid, inst, conn))
    ctx.held.add(retry_create_attachment(ctx, vid, inst, conn))
    return [vid]


def s_reserve(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    inst = str(uuid.uuid4())
    crash(lambda: create_attachment(ctx, vid, inst, None))
    ctx.held.add(retry_create_attachment(ctx, vid, inst, None))
    return [vid]


def s_update(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    att = ctx.outside.svc.attachment_service.create(vid, str(uuid.uuid4()))[0].id
    ctx.held.add(att)
    conn = connector(uuid.uuid4().hex[:8])
    req = ("PUT", f"/attachments/{att}", {"attachment": {"connector": conn}})
    crash(lambda: ctx.call(*req))
    check_connection_info(ctx, expect(ctx, *req)["attachment"])
    return [vid]


def s_second_initiator(ctx: Ctx, crash) -> list[str]:
    """Multiattach: a second host connects while the first is attached."""
    vid = ctx.outside.volume(multiattach=True)
    ctx.held.add(ctx.outside.attach(vid, uuid.uuid4().hex[:8]))
    inst, conn = str(uuid.uuid4()), connector(uuid.uuid4().hex[:8])
    crash(lambda: create_attachment(ctx, vid, inst, conn))
    ctx.held.add(retry_create_attachment(ctx, vid, inst, conn))
    return [vid]


def s_complete(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    att = ctx.outside.attach(vid, uuid.uuid4().hex[:8], complete=False)
    ctx.held.add(att)
    req = ("POST", f"/attachments/{att}/action", {"os-complete": None})
    crash(lambda: ctx.call(*req))
    expect(ctx, *req)
    assert ctx.outside.svc.store.volume(vid).status == st.IN_USE
    return [vid]


def s_delete_last(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    att = ctx.outside.attach(vid, uuid.uuid4().hex[:8])
    crash(lambda: ctx.call("DELETE", f"/attachments/{att}"))
    expect(ctx, "DELETE", f"/attachments/{att}")
    assert ctx.outside.svc.store.volume(vid).status == st.AVAILABLE
    assert not ctx.outside.lio.exists(vid)
    return [vid]


def s_delete_one_of_two(ctx: Ctx, crash) -> list[str]:
    """Multiattach: one host detaches, the other keeps its ACL."""
    vid = ctx.outside.volume(multiattach=True)
    keep = ctx.outside.attach(vid, uuid.uuid4().hex[:8])
    ctx.held.add(keep)
    gone = ctx.outside.attach(vid, uuid.uuid4().hex[:8])
    crash(lambda: ctx.call("DELETE", f"/attachments/{gone}"))
    expect(ctx, "DELETE", f"/attachments/{gone}")
    acls = set(ctx.outside.lio.inspect(vid).acls)
    assert acls == {ctx.outside.svc.store.attachment(keep).initiator}
    return [vid]


def s_volume_create(ctx: Ctx, crash) -> list[str]:
    name = f"crash-create-{uuid.uuid4().hex[:8]}"
    crash(lambda: ctx.call("POST", "/volumes", {"volume": {"size": 1, "name": name}}))
    return [retry_create_volume(ctx, name)]


def s_extend(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    ctx.held.add(ctx.outside.attach(vid, uuid.uuid4().hex[:8]))
    # Data already on the volume (its last MiB too) must survive the extend.
    location = ctx.outside.svc.store.volume(vid).location
    data = os.urandom(1 << 20)
    for offset in (0, GIB - len(data)):
        checksum_io(location, len(data), data, offset)
    req = ("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}})
    crash(lambda: ctx.call(*req))
    expect(ctx, *req)
    vol = ctx.outside.svc.store.volume(vid)
    assert vol.size_gib == 2 and os.path.getsize(vol.location) == 2 * GIB
    want = hashlib.sha256(data).hexdigest()
    assert [checksum_io(location, len(data), offset=o) for o in (0, GIB - len(data))] == \
        [want, want], "data written before the extend changed"
    assert ctx.outside.lio.inspect(vid).lun0_backing.size == 2 * GIB
    return [vid]


def s_volume_delete(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    crash(lambda: ctx.call("DELETE", f"/volumes/{vid}"))
    expect(ctx, "DELETE", f"/volumes/{vid}", ok=(202, 404))
    assert expect(ctx, "GET", f"/volumes/{vid}", ok=(404,)) is not None
    return []


# Reconcile scenarios: the damage is made with the daemon down; the armed
# start dies in its first reconcile; the next start is the retry.
def s_reconcile_drift(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    att = ctx.outside.attach(vid, uuid.uuid4().hex[:8])
    ctx.held.add(att)
    ctx.outside.lio.deauthorize(vid, ctx.outside.svc.store.attachment(att).initiator)
    crash(None)
    return [vid]


def s_reconcile_orphan(ctx: Ctx, crash) -> list[str]:
    orphan = ctx.outside.orphan_export()
    crash(None)
    assert not ctx.outside.lio.exists(orphan)
    for name in os.listdir(ctx.outside.volumes_dir):
        if name == f"orphan-{orphan}.img":
            os.unlink(ctx.outside.volumes_dir / name)
    return []


def s_reconcile_extending(ctx: Ctx, crash) -> list[str]:
    vid = ctx.outside.volume()
    ctx.held.add(ctx.outside.attach(vid, uuid.uuid4().hex[:8]))
    ctx.outside.svc.store.cas_volume(vid, None, status=st.EXTENDING)
    crash(None)
    assert ctx.outside.svc.store.volume(vid).status == st.IN_USE
    return [vid]


def s_restore(ctx: Ctx, crash) -> list[str]:
    """A reboot's restore cut short: three volumes with exports (one
    multiattach with two hosts, one attached, one only connected), one only
    reserved (no export); LIO emptied with the daemon down; the armed start
    dies inside the restore. The next start converges what was half built."""
    o = ctx.outside
    multi, single, connected, reserved = (o.volume(multiattach=True), o.volume(),
                                          o.volume(), o.volume())
    ctx.held.update({o.attach(multi, uuid.uuid4().hex[:8]), o.attach(multi, uuid.uuid4().hex[:8]),
                     o.attach(single, uuid.uuid4().hex[:8]),
                     o.attach(connected, uuid.uuid4().hex[:8], complete=False),
                     o.svc.attachment_service.create(reserved, str(uuid.uuid4()))[0].id})
    crash(None, prepare=lambda: o.empty_lio())
    for vid in (multi, single, connected):
        assert o.lio.exists(vid), f"volume {vid}: not exported after the restart"
    assert not o.lio.exists(reserved)
    return [multi, single, connected, reserved]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("reserve.after_volume_status", "create-with-connector", s_create_with_connector),
    Scenario("reserve.after_attachment", "create-with-connector", s_create_with_connector),
    Scenario("reserve.after_attachment", "reserve", s_reserve),
    Scenario("connect.after_intent", "create-with-connector", s_create_with_connector),
    Scenario("connect.after_intent", "update", s_update),
    Scenario("connect.after_volume_status", "create-with-connector", s_create_with_connector),
    Scenario("connect.after_volume_status", "update", s_update),
    Scenario("connect.after_converge", "create-with-connector", s_create_with_connector),
    Scenario("connect.after_converge", "update", s_update),
    Scenario("complete.after_attachment", "complete", s_complete),
    Scenario("delete.after_attachment", "delete", s_delete_last),
    Scenario("delete.after_volume_status", "delete", s_delete_last),
    Scenario("delete.after_converge", "delete", s_delete_last),
    Scenario("converge.after_deauthorize", "delete-one-of-two", s_delete_one_of_two),
    Scenario("converge.after_unexport", "delete", s_delete_last),
    Scenario("converge.after_export", "create-with-connector", s_create_with_connector),
    Scenario("converge.after_authorize", "second-initiator", s_second_initiator),
    Scenario("lio.export.after_storage_object", "create-with-connector",
             s_create_with_connector),
    Scenario("lio.export.before_enable", "create-with-connector", s_create_with_connector),
    Scenario("lio.authorize.after_mapping", "update", s_update),
    Scenario("lio.unexport.after_target", "delete", s_delete_last),
    Scenario("volume_create.after_intent", "volume-create", s_volume_create),
    Scenario("volume_create.after_backend", "volume-create", s_volume_create),
    Scenario("file_backend.after_temp_file", "volume-create", s_volume_create),
    Scenario("volume_extend.after_intent", "extend", s_extend),
    Scenario("volume_extend.after_backend", "extend", s_extend),
    Scenario("volume_extend.after_size", "extend", s_extend),
    Scenario("volume_delete.after_intent", "volume-delete", s_volume_delete),
    Scenario("volume_delete.after_unexport", "volume-delete", s_volume_delete),
    Scenario("volume_delete.after_backend", "volume-delete", s_volume_delete),
    Scenario("reconcile.after_interrupted", "start", s_reconcile_extending),
    Scenario("reconcile.before_repair", "start", s_reconcile_drift),
    Scenario("reconcile.after_repair", "start", s_reconcile_drift),
    Scenario("reconcile.before_orphan_removal", "start", s_reconcile_orphan),
    Scenario("lio.restore.after_storage_object", "restore", s_restore),
    Scenario("lio.restore.after_storage_object", "restore", s_restore, hit=3),
    Scenario("lio.restore.after_acl", "restore", s_restore),
    Scenario("lio.restore.after_acl", "restore", s_restore, hit=2),
    Scenario("lio.restore.before_enable", "restore", s_restore, hit=2),
    Scenario("reconcile.after_restore", "restore", s_restore),
    Scenario("reconcile.after_restore", "restore", s_restore, hit=2),
)


def run_scenario(ctx: Ctx, sc: Scenario) -> list[str]:
    """One kill at ``sc.point``; returns the invariant problems after the retry.

    The daemon is running unarmed before and after.
    """
    def crash(send, prepare: Callable[[], object] | None = None):
        ctx.daemon.kill()       # idle: nothing to cut short; quicker than a stop
        if prepare is not None:
            prepare()
        ctx.daemon.start(fault=f"{sc.point}@{sc.hit}", ready=send is not None)
        if send is not None:
            _crash_request(ctx, send)
        ctx.daemon.wait_killed(sc.point)
        ctx.daemon.start()

    vids = sc.run(ctx, crash)
    problems = ctx.outside.problems(ctx.held)
    cleanup(ctx, vids)
    return problems + [f"after cleanup: {p}" for p in ctx.outside.problems(ctx.held)]
