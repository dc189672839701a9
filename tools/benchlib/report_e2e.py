"""Sections 3, 4 and 5 of docs/performance.md."""
from __future__ import annotations

from functools import partial
from typing import Any

from benchlib import plots

ATTACH_PHASES = ("os_brick_connector", "api_attachment_create", "os_brick_connect",
                 "api_volume_size_gib", "confirm", "api_attachment_complete")
DETACH_PHASES = ("os_brick_disconnect", "api_attachment_delete")
# In-process variants: os-brick as it comes (our two speed-ups off), and as shipped.
VARIANTS = (("brick_as_is", "os-brick as is"), ("iscsiattach", "iscsiattach"))


def _p50(d: dict, key: str) -> float | None:
    v = ((d or {}).get("phases") or {}).get(key) or {}
    return v.get("p50_ms") / 1e3 if v.get("p50_ms") is not None else None


def _s(v: Any) -> str:
    return f"{v:.2f} s" if isinstance(v, (int, float)) else "—"


def _r(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b \
        else "—"


def _bars(e2e: dict, side: str, phases: tuple[str, ...]) -> dict[str, dict[str, float]]:
    bars = {}
    floor = (e2e.get("floor") or {}).get(side)
    if floor:
        bars["iscsiadm floor"] = {k: _p50(floor, k) or 0.0 for k in floor.get("phases", {})
                                  if k != "total"}
    for key, label in VARIANTS:
        d = (e2e.get(key) or {}).get(side)
        if not d:
            continue
        row = {}
        for k in phases:
            v = _p50(d, k) or 0.0
            det = (d.get("details") or {}).get(f"{k}_detail")
            if det and v:
                sub = (det.get("subprocess_s_p50") or {}).get("p50_ms", 0) / 1e3
                slp = (det.get("sleep_s_p50") or {}).get("p50_ms", 0) / 1e3
                short = k.replace("os_brick_", "")
                row[f"{short}: subprocesses"] = sub
                row[f"{short}: sleeps"] = slp
                row[f"{short}: other"] = max(0.0, v - sub - slp)
            else:
                row[k.replace("api_", "API ").replace("attachment_", "")] = v
        bars[label] = row
    return bars


def _detail_lines(e2e: dict) -> list[str]:
    out = []
    for key, _ in VARIANTS:
        for side in ("attach", "detach"):
            det = ((e2e.get(key) or {}).get(side) or {}).get("details") or {}
            for name, d in det.items():
                cmds: dict[str, int] = {}
                for c in d.get("commands", []):
                    cmds[c] = cmds.get(c, 0) + 1
                listed = "; ".join(f"{c} ×{k}" if k > 1 else c for c, k in cmds.items())
                out.append(f"| {key} | {name.replace('_detail', '')} | {d.get('subprocesses')} | "
                           f"{_s(d.get('subprocess_s'))} | {d.get('sleeps')} | "
                           f"{_s(d.get('sleep_s'))} | {', '.join(d.get('sleep_sites', []))} | "
                           f"{listed} |")
    return out


def e2e(rep) -> str:
    e = rep.s.get("e2e", {})
    fa = _p50((e.get("floor") or {}).get("attach"), "total")
    fd = _p50((e.get("floor") or {}).get("detach"), "total")
    rows = []
    for key, label in VARIANTS:
        label = f"in-process, {label}"
        a = _p50((e.get(key) or {}).get("attach"), "total")
        d = _p50((e.get(key) or {}).get("detach"), "total")
        rows.append(f"| {label} | {_s(a)} | {_r(a, fa)} | {_s(d)} | {_r(d, fd)} |")
    cli = e.get("cli") or {}
    ca = (cli.get("attach") or {}).get("p50_ms")
    cd = (cli.get("detach") or {}).get("p50_ms")
    ca, cd = (ca / 1e3 if ca else None), (cd / 1e3 if cd else None)
    rows.append(f"| `iscsiattach attach` / `detach` CLI (new process) | {_s(ca)} | {_r(ca, fa)} "
                f"| {_s(cd)} | {_r(cd, fd)} |")
    goals = []
    for key, label in VARIANTS:
        a = _p50((e.get(key) or {}).get("attach"), "total")
        ok = (a / fa <= 1.5) if a and fa else None
        goals.append(f"| attach in-process ({label}) ≤ 1.5x floor | {_r(a, fa)} | "
                     f"{'met' if ok else ('**short**' if ok is False else 'not measured')} |")
    rows.append("\n| goal | measured | |\n|---|---|---|\n" + "\n".join(goals))
    st = e.get("startup") or {}
    for side, phases in (("attach", ATTACH_PHASES), ("detach", DETACH_PHASES)):
        bars = _bars(e, side, phases)
        if bars:
            rep.figures[f"performance-{side}-phases.png"] = partial(
                plots.phases, bars, title=f"host {side}: where the time goes (p50)")
    n_in = ((e.get("iscsiattach") or {}).get("attach") or {}).get("phases", {}) \
        .get("total", {}).get("n", 0)
    n_fl = ((e.get("floor") or {}).get("attach") or {}).get("phases", {}) \
        .get("total", {}).get("n", 0)
    from benchlib.report_host_text import e2e_text
    return e2e_text(rep, rows, fa, fd, st, _detail_lines(e), n_in, n_fl,
                    _floor_rows(e), _phase_rows(e))


def _floor_rows(e: dict) -> list[str]:
    out = []
    for side in ("attach", "detach"):
        f = (e.get("floor") or {}).get(side) or {}
        out.append(f"| floor {side} | " + ", ".join(
            f"{k} {_s(_p50(f, k))}" for k in f.get("phases", {})) + " |")
    return out


def _phase_rows(e: dict) -> list[str]:
    out = []
    for key, _ in VARIANTS:
        for side, phases in (("attach", ATTACH_PHASES), ("detach", DETACH_PHASES)):
            d = (e.get(key) or {}).get(side) or {}
            if d:
                out.append(f"| {key} {side} | " + ", ".join(
                    f"{k} {_s(_p50(d, k))}" for k in phases) + f" | {_s(_p50(d, 'total'))} |")
    return out


def _fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """t = a·N² + b·N through the points (least squares, no constant)."""
    if len(points) < 2:
        return None
    s4 = sum(n ** 4 for n, _ in points)
    s3 = sum(n ** 3 for n, _ in points)
    s2 = sum(n ** 2 for n, _ in points)
    y2 = sum(t * n * n for n, t in points)
    y1 = sum(t * n for n, t in points)
    det = s4 * s2 - s3 * s3
    if not det:
        return None
    return (y2 * s2 - y1 * s3) / det, (s4 * y1 - s3 * y2) / det


# targetctl restore measured earlier in this VM, uncontended (shared/vm/NOTES.md).
NOTES_CTL = [(100, 19.0), (1000, 762.0)]


def _ctl_model(ctl: list[tuple[int, float]]):
    """(a, b) of t = a·N² + b·N: fitted to this run's points if there are two,
    else the NOTES curve scaled to this run's largest point (same machine,
    other load). Returns (a, b, how)."""
    fit = _fit(ctl)
    if fit:
        return fit[0], fit[1], "fit to this run's targetctl points"
    if not ctl:
        return None
    a, b = _fit(NOTES_CTL)
    m, t = max(ctl)
    k = t / (a * m * m + b * m)
    return a * k, b * k, (f"the curve measured earlier in this VM (19 s at 100, 762 s at "
                          f"1000, shared/vm/NOTES.md) scaled by {k:.2f} to this run's "
                          f"{m}-export point")


def restore(rep) -> str:
    ours = [(int(n), d["ready_s"]) for n, d in rep.s.get("restore_ours", {}).items()
            if isinstance(d, dict) and "ready_s" in d]
    ctl = [(int(n), d["seconds"]) for n, d in rep.s.get("restore_targetctl", {}).items()
           if isinstance(d, dict) and "seconds" in d and d.get("errors") == 0]
    model = _ctl_model(ctl)
    est = (lambda n: model[0] * n * n + model[1] * n) if model else None
    xs = sorted({n for n, _ in ours} | {n for n, _ in ctl})
    curve = [(n, est(n)) for n in range(0, max(xs or [1]) + 1, max(1, max(xs or [1]) // 50))] \
        if est else []
    rep.figures["performance-restore.png"] = partial(plots.restore, ours, ctl, curve)
    rows, ctl_d = [], dict(ctl)
    for n in xs:
        o = dict(ours).get(n)
        rec = (rep.get("restore_ours", n, "reconcile") or {}).get("seconds")
        c = ctl_d.get(n)
        # No constant term in the model: estimate only above the smallest measured N.
        e = est(n) if est and c is None and ctl and n > min(ctl)[0] else None
        cstr = _s(c) if c is not None else (f"~{e:.0f} s (estimated)" if e else "—")
        rows.append(f"| {n} | {_s(o)} | {_s(rec)} | {cstr} | "
                    f"{_r(c if c is not None else e, o)} |")
    if ours and ctl and max(ours)[0] > min(ctl)[0]:
        n, o = max(ours)
        c = ctl_d.get(n) or (est(n) if est else None)
        m, t = max(ctl)
        floor_lin = t * n / m if n > m else None     # even linear, targetctl takes this long
        ok = (c / o >= 10) if c and o else None
        how = "measured" if n in ctl_d else "targetctl estimated"
        rows.append(f"\n| goal | measured | |\n|---|---|---|\n| ours ≥ 10x faster than "
                    f"targetctl at {n} ({how}) | {_r(c, o)} | "
                    f"{'met' if ok else ('**short**' if ok is False else 'not measured')} |")
        if floor_lin:
            rows.append(f"| lower bound: targetctl scaled only linearly from {m} "
                        f"({floor_lin:.0f} s) / ours at {n} | {_r(floor_lin, o)} | |")
    from benchlib.report_host_text import restore_text
    return restore_text(rep, rows, model, rep.s.get("restore_targetctl", {}))


def datapath(rep) -> str:
    d = rep.s.get("datapath", {})
    raw, mine, tc = d.get("raw") or {}, d.get("iscsiattach") or {}, d.get("targetcli") or {}
    rows, norm = [], {"iscsiattach": {}, "targetcli defaults": {}}
    for job in ("seq_read_1m", "seq_write_1m", "rand_read_4k", "rand_write_4k"):
        r, m, t = raw.get(job) or {}, mine.get(job) or {}, tc.get(job) or {}
        key = "mib_s" if "1m" in job else "iops"
        unit = "MiB/s" if key == "mib_s" else "IOPS"
        rows.append(f"| {job} ({unit}) | {r.get(key, '—')} | {m.get(key, '—')} | "
                    f"{t.get(key, '—')} | {_r(m.get(key), r.get(key))} | "
                    f"{_r(m.get(key), t.get(key))} | {m.get('clat_p99_us', '—')} / "
                    f"{t.get('clat_p99_us', '—')} µs |")
        if r.get(key):
            norm["iscsiattach"][job] = (m.get(key) or 0) / r[key]
            norm["targetcli defaults"][job] = (t.get(key) or 0) / r[key]
    if norm["iscsiattach"]:
        rep.figures["performance-datapath.png"] = partial(plots.datapath, norm)
    from benchlib.report_host_text import datapath_text
    return datapath_text(rep, rows)
