"""Concurrency at the service level (issue 7), through the WSGI app in threads.

Many callers at once on one volume, and a random mixed load over many
volumes: the volume lock and the compare-and-swap status changes must let
exactly the allowed operations through, and afterwards the store, the fake
target and the volume files must agree (the same checks as the fuzz suites
plus a reconcile pass that finds nothing to repair).
"""
from __future__ import annotations

import os
import random
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from iscsiattach.targets.fake import FakeBackend
from tests.unit.api_client import Client
from tests.unit.fuzz_strategies import PROFILE
from tests.unit.fuzz_world import (
    CASES,
    PREFIX,
    TOKEN,
    World,
    connector,
    invariants,
    make_app,
    services_over,
)

# A guard against a deadlock hanging the run, not a timing check: a pass
# takes a few seconds even on a loaded machine.
HANG_GUARD_SECONDS = 600
# Each seed is another random load (and, with threads, other interleavings).
SEEDS = range(1, 26) if PROFILE.endswith("full") else (1, 2)


@pytest.fixture
def world():
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None     # fsync-free, see fuzz
    with tempfile.TemporaryDirectory(prefix="iscsiattach-conc-", dir=base) as tmp:
        root = os.path.join(tmp, "state")
        fake = FakeBackend(prefix=PREFIX)
        services = services_over(root, fake, upgrade=True)
        w = World(root, fake, services, make_app(services))
        yield w
        w.close()


def in_threads(count: int, work: Callable[[int], object]) -> list:
    """``work(i)`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:    # noqa: BLE001 - reported below, with the others
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_SECONDS)
    assert not [t for t in threads if t.is_alive()], "threads still running: a deadlock"
    assert not errors, errors
    return results


def iqn(i: int) -> str:
    return f"iqn.2004-10.com.example:host-{i}"


def test_fifty_hosts_race_for_one_volume_one_wins(world):
    api = Client(world.app, TOKEN)
    vid = api.post("/v3/volumes", {"volume": {"size": 1}}).body["volume"]["id"]

    def attach(i: int):
        return api.post("/v3/attachments", {"attachment": {
            "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
            "connector": connector(iqn(i))}})
    replies = in_threads(50, attach)
    CASES["concurrent requests"] += 50
    assert Counter(r.status for r in replies) == {200: 1, 409: 49}
    (won,) = [r.body["attachment"] for r in replies if r.status == 200]
    winner = won["connection_info"]
    losers = [r.body["conflictingRequest"]["message"] for r in replies if r.status == 409]
    assert all("not multiattach" in m for m in losers), losers
    acls = world.fake.inspect(vid).acls
    assert len(acls) == 1 and acls[next(iter(acls))].chap.userid == winner["auth_username"]
    rows = world.services.store.attachments(vid, include_detached=True)
    assert [a.id for a in rows] == [won["id"]]          # the 49 refusals left nothing
    assert api.get(f"/v3/volumes/{vid}").body["volume"]["status"] == "attaching"
    assert invariants(world) == []


def test_fifty_hosts_race_for_one_multiattach_volume_all_win(world):
    api = Client(world.app, TOKEN)
    vid = api.post("/v3/volumes", {"volume": {"size": 1, "multiattach": True}}).body[
        "volume"]["id"]
    replies = in_threads(50, lambda i: api.post("/v3/attachments", {"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
        "connector": connector(iqn(i % 25))}}))    # two attachments per initiator
    CASES["concurrent requests"] += 50
    assert Counter(r.status for r in replies) == {200: 50}
    assert len(world.fake.inspect(vid).acls) == 25
    assert invariants(world) == []


# -- a mixed random load ----------------------------------------------------------------
OPS = ("reserve", "connect", "update", "complete", "delete", "extend", "volume-delete")
# volume-delete is picked rarer than the rest so volumes stay to work on; every
# operation picked is sent, so the counts below are requests really made.
WEIGHTS = (10, 10, 10, 10, 10, 10, 1)
ALLOWED = {"reserve": {200, 409, 404}, "connect": {200, 409, 404},
           "update": {200, 409, 404}, "complete": {204, 409, 404},
           "delete": {200, 404}, "extend": {202, 400, 409, 404},
           "volume-delete": {202, 409, 404}}


class CountingClient(Client):
    """A client that counts the requests it really sends."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0
        self._count_lock = threading.Lock()

    def request(self, *args, **kwargs):
        with self._count_lock:
            self.sent += 1
        return super().request(*args, **kwargs)


class Load:
    """Random operations from many threads over a shared set of volumes and
    the attachments the threads made; every reply's status is checked."""

    def __init__(self, api: Client, volumes: list[str], seed: int) -> None:
        self.api, self.volumes, self.seed = api, volumes, seed
        self.attachments: list[str] = []
        self.lock = threading.Lock()
        self.seen: Counter = Counter()

    def worker(self, n: int, operations: int) -> None:
        rnd = random.Random(self.seed * 1000 + n)
        for _ in range(operations):
            op = rnd.choices(OPS, WEIGHTS)[0]
            status = getattr(self, op.replace("-", "_"))(rnd)
            assert status in ALLOWED[op], (op, status)
            with self.lock:
                self.seen[(op, status)] += 1

    def _attachment(self, rnd: random.Random) -> str:
        # Mostly recent ones, as a workflow goes on with what it just made.
        with self.lock:
            recent = self.attachments[-12:]
        return rnd.choice(recent) if recent and rnd.random() < 0.95 else str(uuid.uuid4())

    def _create(self, rnd: random.Random, with_connector: bool) -> int:
        body = {"volume_uuid": rnd.choice(self.volumes),
                "instance_uuid": str(uuid.UUID(int=rnd.randrange(8) + 1))}
        if with_connector:
            body["connector"] = connector(iqn(rnd.randrange(6)),
                                          mode=rnd.choice(["rw", "rw", "ro"]))
        reply = self.api.post("/v3/attachments", {"attachment": body})
        if reply.status == 200:
            with self.lock:
                self.attachments.append(reply.body["attachment"]["id"])
        return reply.status

    def reserve(self, rnd):
        return self._create(rnd, False)

    def connect(self, rnd):
        return self._create(rnd, True)

    def update(self, rnd):
        return self.api.put(f"/v3/attachments/{self._attachment(rnd)}", {"attachment": {
            "connector": connector(iqn(rnd.randrange(6)))}}).status

    def complete(self, rnd):
        return self.api.post(f"/v3/attachments/{self._attachment(rnd)}/action",
                             {"os-complete": None}).status

    def delete(self, rnd):
        return self.api.delete(f"/v3/attachments/{self._attachment(rnd)}").status

    def extend(self, rnd):
        return self.api.post(f"/v3/volumes/{rnd.choice(self.volumes)}/action",
                             {"os-extend": {"new_size": rnd.randrange(1, 6)}}).status

    def volume_delete(self, rnd):
        return self.api.delete(f"/v3/volumes/{rnd.choice(self.volumes)}").status


@pytest.mark.parametrize("seed", SEEDS)
def test_mixed_load_keeps_store_and_target_in_step(world, seed):
    api = CountingClient(world.app, TOKEN)
    volumes = [api.post("/v3/volumes", {"volume": {"size": 1, "multiattach": i % 4 == 0}})
               .body["volume"]["id"] for i in range(20)]
    load = Load(api, volumes, seed)
    before = api.sent
    in_threads(16, lambda n: load.worker(n, 50))
    # Every status counted is the reply to a request really sent.
    assert sum(load.seen.values()) == api.sent - before == 16 * 50
    assert sum(n for (op, _), n in load.seen.items() if op == "volume-delete") < 16 * 50 / 20
    CASES["concurrent requests"] += 16 * 50
    # The load did real work, not only refusals.
    assert load.seen[("connect", 200)] and load.seen[("delete", 200)]
    assert load.seen[("complete", 204)] and load.seen[("extend", 202)]
    assert invariants(world) == []
    report = world.services.reconciler.run()
    assert (report.drift_found, report.changed, report.errors) == (0, 0, [])
    # Everything detached: nothing may be left exported, and every volume goes.
    for att in world.services.store.attachments():
        assert api.delete(f"/v3/attachments/{att.id}").status == 200
    assert world.fake.targets == {} and world.fake.storage_objects == {}
    for vol in world.services.store.volumes():
        assert api.delete(f"/v3/volumes/{vol.id}").status == 202
    assert os.listdir(world.volume_dir) == [] and invariants(world) == []
