"""Tables of sections 3, 4 and 5 (host attach, restore, data path), each
with the plots it draws."""
from __future__ import annotations

from functools import partial
from typing import Any

from benchlib import plots
from benchlib.fmt import DASH, cell, ratio, sec, seconds, table, times, verdict
from benchlib.view import View

ATTACH_PHASES = ("os_brick_connector", "api_attachment_create", "os_brick_connect",
                 "api_volume_size_gib", "confirm", "api_attachment_complete")
DETACH_PHASES = ("os_brick_disconnect", "api_attachment_delete")
# In-process variants: os-brick as it comes (our speed-ups off), and as shipped.
VARIANTS = (("brick_as_is", "os-brick as is"), ("iscsiattach", "iscsiattach"))
ATTACH_GOAL = 1.5               # in-process attach / the iscsiadm floor
RESTORE_GOAL = 20               # targetctl / ours at the largest size
STARTUP = (("python", "`python -c pass`"),
           ("import_host_side", "`iscsiattach.host.brick` with os-brick's iSCSI connector "
            "(what the CLI imports)"),
           ("import_os_brick", "`os_brick.initiator.connector`, all protocols"),
           ("import_daemon", "`import iscsiattach.cmd.daemon`"),
           ("import_alembic", "`import alembic` alone"),
           ("import_rtslib", "`import rtslib_fb`"))
JOBS = (("seq_read_1m", "mib_s", "MiB/s"), ("seq_write_1m", "mib_s", "MiB/s"),
        ("rand_read_4k", "iops", "IOPS"), ("rand_write_4k", "iops", "IOPS"))
Figures = dict[str, Any]


def _phase(run: Any, key: str) -> float | None:
    return seconds(((run or {}).get("phases") or {}).get(key))


def _run(e2e: dict, key: str, side: str) -> dict:
    return (e2e.get(key) or {}).get(side) or {}


def e2e(v: View, figures: Figures) -> str:
    """Item 3: attach and detach, p50 totals against the iscsiadm floor."""
    e = v.section("e2e")
    fa = _phase(_run(e, "floor", "attach"), "total")
    fd = _phase(_run(e, "floor", "detach"), "total")
    n_floor = (_run(e, "floor", "attach").get("phases", {}).get("total") or {}).get("n")
    rows = [["iscsiadm floor", sec(fa), "1.00x", sec(fd), "1.00x", n_floor]]
    for key, label in VARIANTS:
        for figure, what in (("total", ""), ("without_export", ", without the export")):
            a = _phase(_run(e, key, "attach"), figure)
            d = _phase(_run(e, key, "detach"), figure)
            if a is None and d is None:
                continue
            n = (_run(e, key, "attach").get("phases", {}).get(figure) or {}).get("n")
            rows.append([f"in-process, {label}{what}", sec(a), times(a, fa), sec(d),
                         times(d, fd), n])
    ca, cd = seconds(_run(e, "cli", "attach")), seconds(_run(e, "cli", "detach"))
    n_cli = _run(e, "cli", "attach").get("n")
    rows.append(["`iscsiattach attach` / `detach` CLI (new process)", sec(ca), times(ca, fa),
                 sec(cd), times(cd, fd), n_cli])
    for side, phases in (("attach", ATTACH_PHASES), ("detach", DETACH_PHASES)):
        if bars := _bars(e, side, phases):
            figures[f"performance-{side}-phases.png"] = partial(
                plots.phases, bars, title=f"host {side}: where the time goes (p50)")
    return table(["path", "attach p50", "/ floor", "detach p50", "/ floor", "samples"], rows)


def e2e_goals(v: View) -> str:
    e = v.section("e2e")
    fa = _phase(_run(e, "floor", "attach"), "total")
    fd = _phase(_run(e, "floor", "detach"), "total")
    rows = []
    for key, label in VARIANTS:
        for side, floor in (("attach", fa), ("detach", fd)):
            for figure, what in (("total", ""), ("without_export", ", without the export")):
                t = _phase(_run(e, key, side), figure)
                if t is None:
                    continue
                ok = t / floor <= ATTACH_GOAL if floor else None
                rows.append([f"{side} in-process ({label}{what}) ≤ {ATTACH_GOAL}x floor",
                             times(t, floor), verdict(ok)])
    return table(["goal", "measured", ""], rows)


def startup(v: View) -> str:
    """Process start and imports, each in a new process (seconds)."""
    st = v.section("e2e").get("startup") or {}
    return table(["what", "seconds"], [[label, sec(st.get(k))] for k, label in STARTUP
                                       if k in st])


def phases(v: View) -> str:
    e = v.section("e2e")
    rows = []
    for side in ("attach", "detach"):
        f = _run(e, "floor", side)
        rows.append([f"floor {side}", ", ".join(
            f"{k} {sec(_phase(f, k))}" for k in f.get("phases", {}) if k != "total"),
            sec(_phase(f, "total"))])
    for key, _ in VARIANTS:
        for side, names in (("attach", ATTACH_PHASES), ("detach", DETACH_PHASES)):
            if d := _run(e, key, side):
                rows.append([f"{key} {side}", ", ".join(f"{k} {sec(_phase(d, k))}"
                                                        for k in names),
                             sec(_phase(d, "total"))])
    return table(["run", "phases (p50)", "total"], rows)


def brick_calls(v: View) -> str:
    """What os-brick ran in the last sample of each variant."""
    e = v.section("e2e")
    rows = []
    for key, _ in VARIANTS:
        for side in ("attach", "detach"):
            for name, d in (_run(e, key, side).get("details") or {}).items():
                counts: dict[str, int] = {}
                for c in d.get("commands", []):
                    counts[c] = counts.get(c, 0) + 1
                rows.append([key, name.replace("_detail", ""), d.get("subprocesses"),
                             sec(d.get("subprocess_s")), d.get("sleeps"), sec(d.get("sleep_s")),
                             ", ".join(d.get("sleep_sites", [])),
                             "; ".join(f"{c} ×{k}" if k > 1 else c for c, k in counts.items())])
    return table(["run", "call", "subprocesses", "their time", "sleeps", "slept", "sleep sites",
                  "commands"], rows)


def speedups(v: View) -> str:
    """os-brick as is against iscsiattach's connector, p50 over the samples."""
    e = v.section("e2e")
    cols = []
    for key, _ in VARIANTS:
        att = _run(e, key, "attach")
        det = att.get("details") or {}
        conn, cpr = det.get("os_brick_connect_detail") or {}, \
            det.get("os_brick_connector_detail") or {}
        cols.append([cpr.get("subprocesses"), sec(_phase(att, "os_brick_connector")),
                     conn.get("subprocesses"), sec(seconds(conn.get("subprocess_s_p50"))),
                     sec(seconds(conn.get("sleep_s_p50"))), sec(_phase(att, "total"))])
    if not any(any(c not in (None, DASH) for c in col) for col in cols):
        return ""
    what = ("connector: programs run", "connector: time", "connect: programs run",
            "connect: time in programs", "connect: os-brick's sleeps", "attach total")
    return table(["attach, p50", *(label for _, label in VARIANTS)],
                 [[w, *(col[i] for col in cols)] for i, w in enumerate(what)])


def _bars(e: dict, side: str, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    bars = {}
    if floor := _run(e, "floor", side):
        bars["iscsiadm floor"] = {k: _phase(floor, k) or 0.0 for k in floor.get("phases", {})
                                  if k != "total"}
    for key, label in VARIANTS:
        if not (d := _run(e, key, side)):
            continue
        row = {}
        for k in names:
            t = _phase(d, k) or 0.0
            det = (d.get("details") or {}).get(f"{k}_detail")
            if det and t:
                sub = seconds(det.get("subprocess_s_p50")) or 0.0
                slp = seconds(det.get("sleep_s_p50")) or 0.0
                short = k.replace("os_brick_", "")
                row |= {f"{short}: subprocesses": sub, f"{short}: sleeps": slp,
                        f"{short}: other": max(0.0, t - sub - slp)}
            else:
                row[k.replace("api_", "API ").replace("attachment_", "")] = t
        bars[label] = row
    return bars


def datapath(v: View, figures: Figures) -> str:
    """Item 5: fio through ours and targetcli's default LUN, and the raw file:
    medians over the runs, their range, the runs per target."""
    d = v.section("datapath")
    raw, mine, tc = d.get("raw") or {}, d.get("iscsiattach") or {}, d.get("targetcli") or {}
    rows, norm = [], {"iscsiattach": {}, "targetcli defaults": {}}
    for job, key, unit in JOBS:
        r, m, t = raw.get(job) or {}, mine.get(job) or {}, tc.get(job) or {}
        rows.append([f"{job} ({unit})", _spread(r, key), _spread(m, key), _spread(t, key),
                     ratio(m.get(key), r.get(key)), ratio(m.get(key), t.get(key)),
                     f"{m.get('clat_p99_us', DASH)} / {t.get('clat_p99_us', DASH)} µs",
                     f"{m.get('n', 1)} / {t.get('n', 1)}"])
        if r.get(key):
            norm["iscsiattach"][job] = (m.get(key) or 0) / r[key]
            norm["targetcli defaults"][job] = (t.get(key) or 0) / r[key]
    if norm["iscsiattach"]:
        figures["performance-datapath.png"] = partial(plots.datapath, norm)
    if not (raw or mine or tc):
        return ""
    return table(["job", "raw", "iscsiattach", "targetcli defaults", "ours / raw",
                  "ours / targetcli", "p99 latency ours / targetcli", "runs ours / targetcli"],
                 rows)


def _spread(figures: dict, key: str) -> str:
    """The median, and its range where the job ran more than once."""
    got = figures.get(key)
    lo, hi = figures.get(f"{key}_min"), figures.get(f"{key}_max")
    if got is None or lo is None or lo == hi:
        return cell(got)
    return f"{got} ({lo}–{hi})"
