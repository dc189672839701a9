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

import pytest

from iscsiattach.secret import Secret
from iscsiattach.target import ChapCredentials, ExportSpec, Grant, Portal

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
