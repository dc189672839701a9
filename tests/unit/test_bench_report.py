"""The benchmark's comparisons are fair by construction: fio jobs take turns
across targets, the iscsiadm floor writes the node record as ours does, and
the restore table reports both sides of each round with what LIO held."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from benchlib import datapath, host, tables_restore  # noqa: E402 - tools/ is not a package
from benchlib.view import View  # noqa: E402
from iscsiattach.host import brick  # noqa: E402


def test_fio_jobs_take_turns_and_report_the_median(monkeypatch):
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(datapath, "fill", lambda target, size: None)

    def fio(target, job, runtime, size):
        calls.append((target, job))
        return {"iops": 100.0 * len(calls), "mib_s": 1.0, "clat_p50_us": 1.0, "clat_p99_us": 2.0}
    monkeypatch.setattr(datapath, "fio", fio)
    got = datapath.interleaved({"a": "/dev/a", "b": "/dev/b"}, 3, 1, "1M")
    first = datapath.ORDER[0]
    # Round by round, job by job, the targets alternate who goes first.
    assert calls[:2] == [("/dev/a", first), ("/dev/b", first)]
    assert calls[8:10] == [("/dev/b", first), ("/dev/a", first)]
    assert len(calls) == 3 * len(datapath.ORDER) * 2
    runs = [r["iops"] for r in got["a"][first]["runs"]]
    assert got["a"][first]["iops"] == sorted(runs)[1]
    assert (got["a"][first]["iops_min"], got["a"][first]["iops_max"]) == (min(runs), max(runs))
    assert got["a"][first]["n"] == 3


def test_a_failed_fio_run_is_reported_not_averaged_away(monkeypatch):
    monkeypatch.setattr(datapath, "fill", lambda target, size: None)
    monkeypatch.setattr(datapath, "fio", lambda *a: {"error": "no device"})
    got = datapath.interleaved({"a": "/dev/a"}, 2, 1, "1M")
    assert got["a"][datapath.ORDER[0]]["error"] == "no device"
    assert "iops" not in got["a"][datapath.ORDER[0]]
    view = View({"meta": {}, "sections": {"datapath": got}}, Path("x.json"))
    assert [(s, k) for s, k, _ in view.marked("error")] == [("datapath", "a")]


def test_the_floor_writes_every_record_setting_ours_writes():
    """Ours writes these into the record instead of running iscsiadm -o
    update (the mutual CHAP user only with mutual CHAP)."""
    ours = (set(brick.RECORD_NODE_KEYS) - {"node.session.auth.username_in"}) \
        | {"node.session.auth.password"}
    assert {key for key, _ in host.floor_record("u", "s")} == ours


def _round(order, ours_s, ctl_s, leftover=0):
    empty = {"targets": 0, "storage_objects": 0}
    census = {"ours": dict(empty), "targetctl": {"targets": leftover, "storage_objects": 0}}
    return {"order": order, "ours": {"seconds": ours_s, "reconcile": {"seconds": ours_s / 2}},
            "targetctl": {"seconds": ctl_s, "errors": 0},
            "lio_before_ours": census, "lio_before_targetctl": census}


def _view(rounds):
    ms = sorted(r["ours"]["seconds"] * 1e3 for r in rounds)
    cs = sorted(r["targetctl"]["seconds"] * 1e3 for r in rounds)
    pair = {"n": 1000, "rounds": rounds,
            "ours_s": {"n": len(ms), "p50_ms": ms[len(ms) // 2], "min_ms": ms[0],
                       "max_ms": ms[-1]},
            "targetctl_s": {"n": len(cs), "p50_ms": cs[len(cs) // 2], "min_ms": cs[0],
                            "max_ms": cs[-1]}}
    return View({"meta": {}, "sections": {"restore_pair": {"1000": pair}}}, Path("x.json"))


def test_restore_pairs_are_compared_at_their_medians_with_the_goal():
    v = _view([_round(["targetctl", "ours"], 20.0, 480.0),
               _round(["ours", "targetctl"], 24.0, 500.0)])
    figures: dict = {}
    text = tables_restore.restore(v, figures)
    assert "| 1000 | 2 |" in text and "20.83x" in text
    assert "performance-restore.png" in figures
    goal = tables_restore.restore_goals(v)
    assert "at 1000" in goal and "met" in goal


def test_restore_rounds_show_order_and_what_lio_held_before():
    v = _view([_round(["ours", "targetctl"], 40.0, 480.0, leftover=3)])
    text = tables_restore.restore_model(v)
    assert "ours then targetctl" in text
    assert "targetctl: targets 3" in text
    assert "short" in tables_restore.restore_goals(_view([_round(["ours", "targetctl"],
                                                                   40.0, 480.0)]))
