"""A seeded world for the hostile-input and concurrency suites.

A ``World`` is the daemon's insides on the host: a real SQLite store, the
stateful fake target, sparse-file volumes and the real WSGI application.
The fuzz suites restore the same seeded world before every example (a copy
of the template's database, files and fake target state), so an example is
reproducible and hypothesis can shrink it; state still evolves within one
example, which runs several requests in a row.

``snapshot`` is what "nothing changed" means: every store row, every object
of the fake target and every volume file. ``invariants`` is what "store and
target agree" means, the same check the concurrency suite makes at the end.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import uuid
from collections import Counter
from dataclasses import dataclass, field

from iscsiattach.api.app import Auth
from iscsiattach.api.metrics import Metrics
from iscsiattach.api.routes import build_app
from iscsiattach.attachments import state as st
from iscsiattach.attachments.desired import connected
from iscsiattach.attachments.wiring import DB_NAME, Services, wire_services
from iscsiattach.model import Portal
from iscsiattach.secret import Secret
from iscsiattach.targets.fake import FakeAcl, FakeBackend, FakeStorageObject, FakeTarget
from iscsiattach.volumes.base import GIB
from iscsiattach.volumes.file import FileBackend

PREFIX = "iqn.2010-10.org.iscsiattach.fuzz:"
TOKEN = "fuzz-token-" + "k" * 32
PORTALS = (Portal("192.0.2.1"), Portal("2001:db8::1", 3261))
MAX_SIZE_GIB = 100
# Cases run, by suite: printed by the fuzz_report plugin (tools/fuzz).
CASES: Counter = Counter()
INITIATORS = ("iqn.2004-10.com.example:host-a", "iqn.2004-10.com.example:host-b",
              "iqn.1994-05.com.redhat:c0ffee", "eui.0123456789abcdef")


def connector(initiator: str, **extra) -> dict:
    return {"initiator": initiator, "ip": "192.0.2.10", "host": "host-" + initiator[-4:],
            "platform": "x86_64", "os_type": "linux2", "multipath": False, **extra}


class LogLines(list):
    """A list of log lines that prints short in a falsifying example."""

    def __repr__(self) -> str:
        return f"<{len(self)} log lines>"


class SecretLog(logging.Handler):
    """Every log line the daemon's code writes during a case, formatted with
    its traceback, so a case can assert that no CHAP secret reached a log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines = LogLines()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@dataclass
class World:
    root: str                       # the state directory
    fake: FakeBackend
    services: Services
    app: object = None
    refs: dict[str, str] = field(default_factory=dict)   # "vol0" -> id, "att1" -> id

    @property
    def volume_dir(self) -> str:
        return os.path.join(self.root, "volumes")

    def close(self) -> None:
        self.services.store.close()


def services_over(root: str, fake: FakeBackend, upgrade: bool) -> Services:
    """The services; ``upgrade`` False when the database is a copy of one at
    head already (the migration run costs more than the rest together)."""
    return wire_services(root, fake, FileBackend(os.path.join(root, "volumes")), PORTALS,
                         max_size_gib=MAX_SIZE_GIB, upgrade=upgrade)


def make_app(services: Services, strategy: str = "token"):
    metrics = Metrics(services.store)
    metrics.ready = True            # /healthz would answer 503 before the first reconcile
    auth = Auth("token", Secret(TOKEN)) if strategy == "token" else Auth("noauth")
    return build_app(services, auth, metrics)


def seed(root: str) -> World:
    """Volumes in every status an attachment can leave them in, with
    attachments in every status, and the target as the store wants it."""
    fake = FakeBackend(prefix=PREFIX)
    s = services_over(root, fake, upgrade=True)
    w = World(root, fake, s)
    a, b, c, _ = INITIATORS
    create = s.volume_service.create
    vols = [create(1, "plain"), create(2, "reserved"), create(1, "in-use"),
            create(1, "shared", multiattach=True), create(3, "attaching"), create(1, "broken"),
            create(1, "error-attaching")]
    w.refs.update({f"vol{i}": v.id for i, v in enumerate(vols)})
    inst = [str(uuid.UUID(int=i + 1)) for i in range(8)]
    att = []
    att.append(s.attachment_service.create(vols[1].id, inst[0])[0])
    att.append(s.attachment_service.create(vols[2].id, inst[1], connector(a))[0])
    s.attachment_service.complete(att[-1].id)
    att.append(s.attachment_service.create(vols[3].id, inst[2], connector(a))[0])
    s.attachment_service.complete(att[-1].id)
    att.append(s.attachment_service.create(vols[3].id, inst[3], connector(b), mode="ro")[0])
    att.append(s.attachment_service.create(vols[4].id, inst[4], connector(c))[0])
    gone = s.attachment_service.create(vols[0].id, inst[5])[0]
    s.attachment_service.delete(gone.id)
    att.append(gone)
    att.append(s.attachment_service.create(vols[6].id, inst[6])[0])
    s.store.cas_attachment(att[-1].id, [st.A_RESERVED], status=st.A_ERROR_ATTACHING)
    s.store.cas_volume(vols[5].id, None, status=st.ERROR)
    w.refs.update({f"att{i}": x.id for i, x in enumerate(att)})
    w.refs.update({f"inst{i}": x for i, x in enumerate(inst)})
    problems = invariants(w)
    assert not problems, problems
    return w


class Template:
    """The seeded world and how to put it back: database bytes, file sizes,
    fake target state. One set of services and apps serves every example
    (a new engine per example would recompile every statement)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.world = seed(root)
        self.world.close()          # checkpoints the WAL into the main file
        with open(os.path.join(root, DB_NAME), "rb") as f:
            self.db = f.read()
        self.files = _files(self.world.volume_dir)
        fake = self.world.fake
        self.targets = {iqn: _copy_target(t) for iqn, t in fake.targets.items()}
        self.objects = dict(fake.storage_objects)
        self.apps = {s: make_app(self.world.services, s) for s in ("token", "noauth")}

    def restore(self, strategy: str = "token") -> World:
        """The seeded world again, in the same directory (so stored
        locations and backing paths stay valid)."""
        world = self.world
        world.close()               # no connection may see the file change
        db = os.path.join(self.root, DB_NAME)
        for leftover in (db + "-wal", db + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        with open(db, "wb") as f:
            f.write(self.db)
        shutil.rmtree(world.volume_dir)
        os.mkdir(world.volume_dir, 0o700)
        for name, size in self.files.items():
            fd = os.open(os.path.join(world.volume_dir, name), os.O_WRONLY | os.O_CREAT, 0o600)
            os.ftruncate(fd, size)
            os.close(fd)
        world.fake.targets = {iqn: _copy_target(t) for iqn, t in self.targets.items()}
        world.fake.storage_objects = {n: FakeStorageObject(o.backing, o.serial)
                                      for n, o in self.objects.items()}
        world.fake.calls.clear()
        world.app = self.apps[strategy]
        return world


def _copy_target(t: FakeTarget) -> FakeTarget:
    # Credentials and portals are frozen values: sharing them is safe.
    return FakeTarget(t.tpg_enabled, dict(t.tpg_attributes), t.auth_method, set(t.portals),
                      t.lun0, {i: FakeAcl(a.chap, dict(a.mapped_luns))
                               for i, a in t.acls.items()})


def _files(directory: str) -> dict[str, int]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return {}
    return {n: os.stat(os.path.join(directory, n)).st_size for n in names}


def _acl_state(acl: FakeAcl) -> tuple:
    chap = acl.chap
    return (chap.userid, chap.password.reveal(), tuple(sorted(acl.mapped_luns.items()))) \
        if chap else (None, None, tuple(sorted(acl.mapped_luns.items())))


def snapshot(world: World) -> dict:
    """Everything a refused request must leave exactly as it was."""
    with contextlib.closing(sqlite3.connect(world.services.store.path)) as conn:
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall())
                for t in ("volumes", "attachments")}
    targets = {iqn: (t.tpg_enabled, sorted(t.tpg_attributes.items()), t.auth_method,
                     sorted(map(str, t.portals)), t.lun0,
                     {i: _acl_state(a) for i, a in t.acls.items()})
               for iqn, t in world.fake.targets.items()}
    objects = {n: (o.backing, o.serial) for n, o in world.fake.storage_objects.items()}
    return {"store": rows, "targets": targets, "storage_objects": objects,
            "files": _files(world.volume_dir)}


def secrets_of(world: World) -> set[str]:
    with contextlib.closing(sqlite3.connect(world.services.store.path)) as conn:
        return {r[0] for r in conn.execute("SELECT chap_secret FROM attachments") if r[0]}


def invariants(world: World) -> list[str]:
    """Where the store and the fake target (and the volume files) disagree."""
    s, fake = world.services, world.fake
    problems = []
    vols = {v.id: v for v in s.store.volumes()}
    for vol in vols.values():
        atts = s.store.attachments(vol.id, include_detached=True)
        drift = s.converger.drift(vol)
        if drift:
            problems.append(f"volume {vol.id}: drift {drift}")
        want_acls = {a.initiator for a in connected(atts)}
        state = fake.inspect(vol.id)
        have_acls = set(state.acls) if state else set()
        if want_acls != have_acls:
            problems.append(f"volume {vol.id}: ACLs {sorted(have_acls)}, "
                            f"attachments want {sorted(want_acls)}")
        if vol.status in st.ATTACHABLE:
            want = st.volume_status_for(a.status for a in atts)
            if vol.status != want:
                problems.append(f"volume {vol.id} is {vol.status}; its attachments "
                                f"{sorted(a.status for a in atts)} say {want}")
        elif vol.status not in (st.ERROR,):
            problems.append(f"volume {vol.id} left in transient status {vol.status}")
    for vid in fake.list_exports():
        if vid not in vols:
            problems.append(f"export of unknown volume {vid} (leaked)")
    want_files = {f"volume-{v.id}.img": v.size_gib * GIB for v in vols.values()}
    have_files = _files(world.volume_dir)
    if have_files != want_files:
        problems.append(f"volume files {have_files} != store {want_files}")
    return problems
