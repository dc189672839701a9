"""200 exports made and removed on real LIO; per-operation times printed.

Times are reported, not asserted (tools/bench compares them properly). What
is asserted: every export really exists with its ACL while the 200 stand,
and nothing of ours is left afterwards.
"""
from __future__ import annotations

import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from iscsiattach.model import ChapCredentials, ExportSpec, Grant, Portal
from iscsiattach.secret import Secret
from iscsiattach.targets.lio.configfs import hba_slots

N = 200


def _summary(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=20)
    return {"p50_ms": round(statistics.median(times) * 1e3, 1),
            "p95_ms": round(q[18] * 1e3, 1), "max_ms": round(max(times) * 1e3, 1),
            "first20_ms": round(statistics.mean(times[:20]) * 1e3, 1),
            "last20_ms": round(statistics.mean(times[-20:]) * 1e3, 1)}


@pytest.mark.slow
def test_200_exports_created_and_removed(backend, make_backing, tamper, results_dir, capsys):
    grant = Grant("iqn.2004-10.com.example:scale",
                  ChapCredentials("scale-user", Secret("scale-secret-0123456789")))
    specs = [ExportSpec(str(uuid.uuid4()), make_backing(8 << 20), (Portal("127.0.0.1"),))
             for _ in range(N)]
    timing: dict[str, list[float]] = {"export": [], "authorize": [], "deauthorize": [],
                                      "unexport": []}

    def timed(kind, fn, *args):
        t0 = time.perf_counter()
        fn(*args)
        timing[kind].append(time.perf_counter() - t0)

    for spec in specs:
        timed("export", backend.export, spec)
        timed("authorize", backend.authorize, spec.volume_id, grant)
    assert set(backend.list_exports()) >= {s.volume_id for s in specs}
    for spec in specs[:: N // 10]:
        assert backend.drift(spec, [grant]) == []
    for spec in specs:
        timed("deauthorize", backend.deauthorize, spec.volume_id, grant.initiator)
        timed("unexport", backend.unexport, spec.volume_id)
    assert backend.list_exports() == []
    assert [left for s in specs for left in tamper.leftovers(s.volume_id)] == []

    report = {kind: _summary(times) for kind, times in timing.items()}
    (results_dir / "lio-scale-200.json").write_text(json.dumps(report, indent=1))
    with capsys.disabled():
        print(f"\n{N} exports on LIO (times not asserted):")
        for kind, row in report.items():
            print(f"  {kind:12s} " + "  ".join(f"{k}={v}" for k, v in row.items()))


def _ids_sharing_first_slots(prefix: str, pairs: int) -> list[tuple[str, str]]:
    """Volume ids, two by two, whose backstore slots start at the same index."""
    first: dict[int, str] = {}
    found: list[tuple[str, str]] = []
    while len(found) < pairs:
        vid = str(uuid.uuid4())
        slot = hba_slots(prefix, vid)[0]
        if slot in first:
            found.append((first.pop(slot), vid))
        else:
            first[slot] = vid
    return found


def test_restores_in_threads_each_take_a_slot_of_their_own(backend, make_backing, tamper):
    """A restore builds exports side by side; the one thing they share is the
    choice of backstore slot, and volumes whose slots collide get different ones."""
    grant = Grant("iqn.2004-10.com.example:threads",
                  ChapCredentials("threads-user", Secret("threads-secret-0123456789")))
    pairs = _ids_sharing_first_slots(backend.prefix, 3)
    ids = [vid for pair in pairs for vid in pair] + [str(uuid.uuid4()) for _ in range(10)]
    specs = [ExportSpec(vid, make_backing(8 << 20), (Portal("127.0.0.1"),)) for vid in ids]
    with ThreadPoolExecutor(8) as pool:
        built = list(pool.map(lambda spec: backend.restore_export(spec, [grant]), specs))
    assert built == [True] * len(specs)
    slots = {vid: tamper.storage_object_slot(vid) for vid in ids}
    assert len(set(slots.values())) == len(ids)
    for a, b in pairs:
        first = hba_slots(backend.prefix, a)[:2]
        assert sorted([slots[a], slots[b]]) == sorted(first)
    for spec in specs:
        assert backend.drift(spec, [grant]) == []
    for vid in ids:
        assert backend.unexport(vid) is True
    assert [left for vid in ids for left in tamper.leftovers(vid)] == []
