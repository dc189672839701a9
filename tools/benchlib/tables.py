"""Tables of sections 1, 2 and 6 (LIO work, concurrency, footprint) and of
the machine the run measured on; each with the plots it draws."""
from __future__ import annotations

from functools import partial
from typing import Any

from benchlib import plots
from benchlib.common import DEFAULT_INTERVAL
from benchlib.fmt import DASH, ms, ratio, sec, table, verdict
from benchlib.view import View

OURS, RTS, TCLI = ("iscsiattachd (REST)", "rtslib + save_to_file (Cinder way)",
                   "targetcli one-shot")
FLAT_GOAL = 1.2                 # ours at the largest stage / at the smallest, p50
BASELINE_GOALS = (("control_rtslib", "(a) rtslib + save", 100),
                  ("control_targetcli", "(b) targetcli", 50))
Figures = dict[str, Any]


def measured_on(v: View) -> str:
    m = v.meta
    rows = [["machine", f"{m.get('accel')} VM, {m.get('vcpus')} vCPU, {m.get('mem_mib')} MiB, "
             f"`{m.get('cpu')}`"],
            ["kernel", m.get("kernel")], ["profile", f"`{m.get('profile')}`"],
            ["commit", m.get("commit")], ["started", m.get("started")],
            ["finished", m.get("finished", "**not finished: partial results**")],
            ["rtslib-fb (venv: ours, baseline a)", m.get("rtslib_fb_venv")],
            ["targetcli-fb, python3-rtslib-fb (Debian: baseline b, targetctl)",
             f"{m.get('targetcli')}, {m.get('rtslib_fb_debian')}"],
            ["os-brick", m.get("os_brick")], ["fio", m.get("fio")],
            ["Python", m.get("python")]]
    if m.get("note"):
        rows.append(["note", m["note"]])
    return table(["", ""], rows)


def _p50s(d: dict[str, Any], op: str) -> str:
    s = d.get(op) or {}
    return f"{ms(s.get('p50_ms'))} / {ms(s.get('p95_ms'))} ({ms(s.get('min_ms'))})"


def control(v: View, figures: Figures) -> str:
    """Item 1: ours against baselines (a) and (b) at each stage."""
    rows, series = [], {OURS: {}, RTS: {}, TCLI: {}}
    for n in v.stages():
        o, a = v.get("control_ours", n) or {}, v.get("control_rtslib", n) or {}
        b, how = v.tcli(n)
        estimated = {(TCLI, "create"): how in ("cut short", "grown"),
                     (TCLI, "delete"): how in ("cut short", "grown"),
                     (RTS, "delete"): bool(a.get("delete_save_estimated"))}
        for system, d in ((OURS, o), (RTS, a), (TCLI, b)):
            for op in ("create", "delete"):
                if (p50 := (d.get(op) or {}).get("p50_ms")) is not None:
                    series[system].setdefault(op, []).append(
                        (n, p50, estimated.get((system, op), False)))
        est = "~" if how in ("cut short", "grown") else ""
        p50 = {(k, op): (d.get(op) or {}).get("p50_ms") for k, d in (("o", o), ("a", a), ("b", b))
               for op in ("create", "delete")}
        rows.append([n, _p50s(o, "create"), _p50s(o, "delete"), (o.get("create") or {}).get("n"),
                     ms(o.get("cpu_per_op_ms")),
                     f"{ms(p50['a', 'create'])} / {ms(p50['a', 'delete'])}",
                     (a.get("create") or {}).get("n"),
                     f"{est}{ms(p50['b', 'create'])} / {est}{ms(p50['b', 'delete'])}",
                     "estimated" if how == "grown" else
                     f"{(b.get('create') or {}).get('n', 0)}"
                     f"{', cut short' if how == 'cut short' else ''}",
                     f"{ratio(p50['a', 'create'], p50['o', 'create'])} / "
                     f"{ratio(p50['a', 'delete'], p50['o', 'delete'])}",
                     f"{ratio(p50['b', 'create'], p50['o', 'create'])} / "
                     f"{ratio(p50['b', 'delete'], p50['o', 'delete'])}"])
    figures["performance-control-plane.png"] = partial(plots.control_plane, series)
    return table(["existing exports", "ours create p50 / p95 (min)", "ours delete p50 / p95 (min)",
                  "ours samples", "ours CPU per operation", "(a) create / delete p50",
                  "(a) samples", "(b) create / delete p50", "(b) samples",
                  "(a) / ours create / delete", "(b) / ours create / delete"], rows)


def control_goals(v: View) -> str:
    st = v.stages()
    if not st:
        return ""
    lo, hi = st[0], st[-1]
    rows = []
    for op in ("create", "delete"):
        flat = v.flatness(op)
        rows.append([f"ours flat, {op}: p50 at {hi} / p50 at {lo} ≤ {FLAT_GOAL}",
                     f"{ratio(flat, 1)} (fastest samples: {ratio(v.flatness(op, 'min_ms'), 1)})",
                     verdict(flat <= FLAT_GOAL if flat else None)])
    b, how = v.tcli(hi)
    for key, name, goal in BASELINE_GOALS:
        for op in ("create", "delete"):
            base = (v.get(key, hi, op) if key == "control_rtslib" else b.get(op)) or {}
            mine = v.get("control_ours", hi, op, "p50_ms")
            r = base.get("p50_ms") / mine if base.get("p50_ms") and mine else None
            label = f"{name} ({how})" if key == "control_targetcli" and how else name
            rows.append([f"{label} / ours at {hi} exports, {op} ≥ {goal}x",
                         ratio(base.get("p50_ms"), mine), verdict(r >= goal if r else None)])
    return table(["goal", "measured", ""], rows)


def rtslib_parts(v: View) -> str:
    """Baseline (a), p50 per part."""
    rows = []
    for n in v.stages():
        a = v.get("control_rtslib", n) or {}
        parts = ("create_rtslib", "create_save", "delete_target", "delete_storage_object",
                 "delete_save")
        rows.append([n, *(ms((a.get(k) or {}).get("p50_ms")) for k in parts),
                     a.get("save_bytes")])
    return table(["existing exports", "rtslib create", "save after create", "`Target.delete()`",
                  "`StorageObject.delete()`", "save after delete", "saveconfig bytes"], rows)


def tcli_calls(v: View) -> str:
    """Baseline (b): what one targetcli call cost, and how many a create and
    a delete take (a sample cut at its time cap is estimated from these)."""
    rows = []
    for n in v.stages():
        b = v.get("control_targetcli", n) or {}
        per = b.get("per_call") or {}
        if per:
            rows.append([n, ms(per.get("p50_ms")), per.get("n"), b.get("calls_per_create"),
                         b.get("calls_per_delete"), "yes" if b.get("estimated") else "no"])
    return table(["existing exports", "per call p50", "calls timed", "calls per create",
                  "calls per delete", "cut at its cap, estimated"], rows)


def concurrency(v: View, figures: Figures) -> str:
    """Item 2: ops/s and latency by number of clients."""
    data = v.section("concurrency")
    rows, pts = [], []
    base = (data.get("1") or {}).get("ops_per_s")
    for c in sorted(data, key=int):
        d = data[c]
        lat = d.get("latency") or {}
        rows.append([c, d.get("ops"), d.get("ops_per_s"), ratio(d.get("ops_per_s"), base),
                     ms(lat.get("p50_ms")), ms(lat.get("p95_ms")),
                     d.get("error_count", d.get("error"))])
        if "ops_per_s" in d:
            pts.append((int(c), d["ops_per_s"], lat.get("p95_ms", 0)))
    if pts:
        figures["performance-concurrency.png"] = partial(plots.concurrency, pts)
    return table(["clients", "operations", "ops/s", "ops/s vs 1 client", "p50", "p95", "errors"],
                 rows)


def footprint(v: View) -> str:
    """Item 6: memory, idle CPU, and the reconcile runs' cost: the first run
    after a restart (every volume in full) and the periodic runs."""
    rows = []
    for n in v.stages():
        f = v.get("footprint", n) or {}
        r = v.get("restart_ours", n) or {}
        s = v.get("steady_ours", n) or {}
        secs = (r.get("reconcile") or {}).get("seconds")
        share = f"{100 * secs / DEFAULT_INTERVAL:.0f} %" if secs else DASH
        steady = s.get("cpu_share_at_default_interval_pct")
        rows.append([n, f"{f['rss_mib']} MiB" if "rss_mib" in f else DASH,
                     f"{f['idle_cpu_pct']} % over {f.get('idle_window_s', DASH)} s"
                     if "idle_cpu_pct" in f else DASH,
                     sec(r.get("ready_s")), sec(secs), share,
                     ms((s.get("seconds") or {}).get("p50_ms")),
                     sec(s.get("cpu_per_pass_mean_s")),
                     f"{steady} %" if steady is not None else DASH])
    return table(["exports", "RSS", "idle CPU", "restart until ready",
                  "first run (all in full)", f"first run / {DEFAULT_INTERVAL} s",
                  "periodic run p50", "its CPU (mean)",
                  f"CPU share, runs {DEFAULT_INTERVAL} s apart"], rows)
