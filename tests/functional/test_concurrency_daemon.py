"""Concurrency through the real daemon over HTTP, on real LIO."""
from __future__ import annotations

import threading
import uuid

import pytest

from tests.functional.crash import Ctx, Outside, cleanup, connector, expect
from tests.functional.crash_load import Worker, held_ids
from tests.functional.daemon import Daemon, call

RACERS = 50
VOLUMES = 20
WORKERS = 8
OPS_PER_WORKER = 15


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, scratch_fs, fork_server):
    root = tmp_path_factory.mktemp("concurrency")
    volumes = scratch_fs / "concurrency-volumes"
    # The periodic reconciler runs during the load too: it must never undo
    # a request's work nor race one into an inconsistent state.
    daemon = Daemon(root / "state", volumes, "[reconciler]\ninterval = 5\n",
                    forkserver=fork_server)
    daemon.start(timeout=600)
    outside = Outside(daemon.state, volumes)
    yield Ctx(daemon, outside)
    daemon.stop()
    for vid in outside.lio.list_exports():      # our test prefix only
        outside.lio.unexport(vid)


def test_50_hosts_race_for_one_volume_one_wins_49_conflicts(ctx):
    vid = expect(ctx, "POST", "/volumes", {"volume": {"size": 1}})["volume"]["id"]
    results: list[tuple[int, dict]] = [None] * RACERS
    start = threading.Barrier(RACERS)

    def race(i: int) -> None:
        start.wait()
        try:
            results[i] = call("POST", "/attachments", {"attachment": {
                "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
                "connector": connector(f"race-{i}")}}, ctx.token)
        except OSError as exc:      # e.g. a connection reset: a failure, shown below
            results[i] = (None, repr(exc))
    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    statuses = sorted((r[0] or 0) for r in results)
    assert statuses == [200] + [409] * (RACERS - 1), [r for r in results if r[0] is None]
    for status, body in results:
        if status == 409:
            assert body["conflictingRequest"]["code"] == 409
    winner = next(b for s, b in results if s == 200)["attachment"]
    acls = ctx.outside.lio.inspect(vid).acls
    assert list(acls) == [ctx.outside.svc.store.attachment(winner["id"]).initiator]
    # The losers left nothing behind: one attachment, and the store and LIO agree.
    atts = call("GET", f"/attachments?volume_id={vid}", token=ctx.token)[1]["attachments"]
    assert [a["id"] for a in atts] == [winner["id"]]
    assert ctx.outside.problems({winner["id"]}) == []
    cleanup(ctx, [vid])
    assert ctx.outside.problems() == [] and ctx.outside.lio.list_exports() == []


def test_mixed_load_over_20_volumes_keeps_every_invariant(ctx):
    vids = [expect(ctx, "POST", "/volumes", {"volume": {
        "size": 1, "multiattach": i % 2 == 0}})["volume"]["id"] for i in range(VOLUMES)]
    workers = [Worker(n, ctx.token, vids, seed=n, ops=OPS_PER_WORKER) for n in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(1200)
    assert [w.error for w in workers] == [None] * WORKERS
    assert not any(w.is_alive() for w in workers)
    assert [u for w in workers for u in w.tally.unexpected] == []
    done = sum(w.tally.ops for w in workers)
    assert done >= WORKERS * OPS_PER_WORKER // 2, done
    assert ctx.outside.problems(held_ids(workers)) == []
    # Nothing leaked: after every client deletes what it holds, nothing is left.
    cleanup(ctx, vids)
    assert ctx.outside.problems() == []
    assert [v for v in ctx.outside.lio.list_exports() if v in vids] == []
    assert [v for v in ctx.outside.svc.store.volumes() if v.id in vids] == []
    assert [a for a in ctx.outside.svc.store.attachments(include_detached=True)
            if a.volume_id in vids] == []
