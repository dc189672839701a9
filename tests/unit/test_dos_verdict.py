"""The DoS suite's verdict: the full form fails on every goal; the quick
form (CI) records the latency ratio and its goal but fails only on the rest."""
from __future__ import annotations

from tests.functional import dos

GOALS = {"auth_all_ok": (True, "42/42"), "p50_ratio": (False, 3.054), "alive": (True, True)}


def test_the_full_form_fails_on_latency():
    r = dos.record_verdict({}, dict(GOALS), dos.FULL)
    assert r["failed"] == ["p50_ratio"] and r["verdict"] == "FAIL"
    assert "(FAILED)" in dos.goal_report(r)


def test_the_quick_form_records_latency_without_failing_on_it():
    r = dos.record_verdict({}, dict(GOALS), dos.QUICK)
    assert r["failed"] == [] and r["verdict"] == "PASS"
    assert r["goals"]["p50_ratio"] == {"met": False, "value": 3.054, "judged": False}
    assert "over its goal, not judged" in dos.goal_report(r)
    assert "p50_ratio over its goal" in dos._verdict(r)


def test_the_quick_form_still_fails_on_every_other_goal():
    goals = {**GOALS, "auth_all_ok": (False, "41/42")}
    r = dos.record_verdict({}, goals, dos.QUICK)
    assert r["failed"] == ["auth_all_ok"] and r["verdict"] == "FAIL"
