"""The "what fell short, and why" section: computed from the results, with
the causes found while building the benchmark (each cause named where it
was measured or read in the code)."""
from __future__ import annotations

from typing import Any


def _p50(node: Any, *path: str) -> float | None:
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node / 1e3 if isinstance(node, (int, float)) else None


def _fmt(v: float | None) -> str:
    return "—" if v is None else (f"{v:.2f} s" if v < 100 else f"{v:.0f} s")


def control(rep) -> list[str]:
    st = rep.stages()
    if len(st) < 2:
        return ["* Item 1: only one size was measured in this run; flatness and the "
                "1000-export ratios need the full run."]
    lo, hi = st[0], st[-1]
    out = []
    o_lo = _p50(rep.get("control_ours", lo), "create", "p50_ms")
    o_hi = _p50(rep.get("control_ours", hi), "create", "p50_ms")
    a_hi = rep.get("control_rtslib", hi) or {}
    save = _p50(a_hi, "create_save", "p50_ms")
    def spread(n: int, op: str) -> str:
        d = (rep.get("control_ours", n) or {}).get(op) or {}
        return f"{_fmt(_p50(d, 'min_ms'))}–{_fmt(_p50(d, 'max_ms'))}"
    out.append(
        f"* Item 1, ours: create p50 {_fmt(o_lo)} at {lo} and {_fmt(o_hi)} at {hi} exports; "
        f"single samples ranged {spread(lo, 'create')} at {lo} and {spread(hi, 'create')} at "
        f"{hi} (delete: {spread(lo, 'delete')} and {spread(hi, 'delete')}). With samples "
        "spread that wide by a CPU shared with other VMs (stages ran many minutes apart, "
        "under different load) the p50 ratio cannot resolve a 1.2x goal either way; the "
        "fastest samples, least disturbed, are the better comparison. Nothing in our path "
        "walks configfs or the store per operation (computed configfs paths, a hashed "
        "backstore index, our own rmdir; see below), unlike both baselines. For a "
        "noise-free check the next runs also record the daemon's CPU seconds per "
        "operation (`cpu_per_op_ms`), which waiting for a shared CPU does not inflate.")
    if save:
        out.append(
            f"* Item 1, baseline (a): one `save_to_file()` at {hi} exports took {_fmt(save)} "
            f"(p50) — the dump is the cost, linear in all exports (saveconfig "
            f"{a_hi.get('save_bytes', 0) // 1024} KiB); our operation never dumps.")
    b_hi = rep.get("control_targetcli", hi) or {}
    if b_hi.get("estimated"):
        out.append(
            f"* Item 1, baseline (b) at {hi}: its sample was cut at its time cap and is "
            f"estimated as the measured per-call time "
            f"({_fmt(_p50(b_hi, 'per_call', 'p50_ms'))}, {b_hi.get('per_call', {}).get('n')} "
            f"calls) times {b_hi.get('calls_per_create')} calls per create and "
            f"{b_hi.get('calls_per_delete')} per delete (every call rebuilds the whole tree, "
            "so calls cost alike).")
    return out


def host(rep) -> list[str]:
    e = rep.s.get("e2e") or {}
    att = (e.get("iscsiattach") or {}).get("attach") or {}
    fl = (e.get("floor") or {}).get("attach") or {}
    total, floor = _p50(att, "phases", "total", "p50_ms"), _p50(fl, "phases", "total", "p50_ms")
    if not total or not floor:
        return []
    det = att.get("details") or {}
    conn = det.get("os_brick_connect_detail") or {}
    api = _p50(att, "phases", "api_attachment_create", "p50_ms")
    listed = "; ".join(dict.fromkeys(conn.get("commands", [])))
    return [
        f"* Item 3: attach in-process {_fmt(total)} vs floor {_fmt(floor)} "
        f"({total / floor:.1f}x; goal 1.5x). What is left (p50): os-brick runs "
        f"{conn.get('subprocesses', '?')} programs to connect "
        f"({_fmt(_p50(conn, 'subprocess_s_p50', 'p50_ms'))}; the floor runs 4): {listed} — "
        "reads and updates no os-brick setting skips; the attachment create itself (the "
        f"LIO work the floor's prepared target did not need) is {_fmt(api)}. Each program "
        "start is slow in a TCG guest, and the floor's two samples vary with the load.",
        _fix_effect(e),
        "* Beyond these: a long-running host agent instead of a new CLI process per "
        "attach pays the Python start and the os-brick import once (see the startup "
        "figures); the CLI imports only os-brick's iSCSI connector, without eventlet's "
        "green DNS."]


def _fix_effect(e: dict) -> str:
    def parts(key: str):
        att = (e.get(key) or {}).get("attach") or {}
        det = att.get("details") or {}
        conn = det.get("os_brick_connect_detail") or {}
        cpr = det.get("os_brick_connector_detail") or {}
        return (_p50(conn, "sleep_s_p50", "p50_ms"), _p50(att, "phases", "total", "p50_ms"),
                conn.get("sleep_sites", []), cpr.get("subprocesses"),
                _p50(att, "phases", "os_brick_connector", "p50_ms"), conn.get("subprocesses"))
    s0, t0, _, n0, c0, p0 = parts("brick_as_is")
    s1, t1, sites1, n1, c1, p1 = parts("iscsiattach")
    if s0 is None or s1 is None:
        return "* os-brick as is was not measured in this run (no before/after)."
    gone = not any(site.startswith("iscsi.py") for site in sites1)
    return (f"* iscsiattach's speed-ups over os-brick (iscsiattach/host/brick.py), measured "
            f"against os-brick as is in the same boot: the connector ran {n1} programs "
            f"instead of {n0} ({_fmt(c1)} vs {_fmt(c0)}: iSCSI fields only, the initiator "
            f"name read from its file); connect ran {p1} programs instead of {p0} (the scan "
            "mode and CHAP settings written into the node record, the SCSI scan written to "
            "sysfs without `tee`); os-brick's sleeps during connect went from "
            f"{_fmt(s0)} to {_fmt(s1)} (p50){'; its fixed 1 s WWN sleep never ran' if gone else ''}"
            f" (the waits for udev's by-id link and for the new disk poll at 10 ms). Attach "
            f"totals: {_fmt(t0)} as is, {_fmt(t1)} with them.")


def restore(rep) -> list[str]:
    ours = rep.s.get("restore_ours") or {}
    sizes = [int(k) for k, v in ours.items() if isinstance(v, dict) and "ready_s" in v]
    if not sizes:
        return []
    n = max(sizes)
    d = ours[str(n)]
    rec = (d.get("reconcile") or {}).get("seconds")
    vols = (d.get("reconcile") or {}).get("volumes") or n
    st = (rep.s.get("e2e") or {}).get("startup") or {}
    return [
        f"* Item 4: at {n} exports iscsiattachd was ready after {_fmt(d.get('ready_s'))}, "
        f"of which the first reconcile took {_fmt(rec)}"
        + (f" ({1e3 * rec / vols:.0f} ms per volume over {vols} volumes)" if rec else "")
        + "; the rest is the process start (`import iscsiattach.cmd.daemon` "
        f"{_fmt(st.get('import_daemon'))} in this VM; alembic, {_fmt(st.get('import_alembic'))} "
        "to import on its own, is imported only when a migration is due, pyroute2 only "
        "for portals given as interface names).",
        "* Item 4, how the restore runs: LIO holding nothing under our prefix (one listing "
        "tells), each export is built straight from the store — the store read once for "
        "all volumes (the daemon's first pass runs before it serves the API), no drift "
        "check and no convergence reads, one LIO lock per volume, the target, TPG, "
        "portals, LUN and ACLs written into configfs at computed paths "
        "(`iscsiattach/target/lio_build.py`; the storage object through rtslib), and no "
        "status write unless a status changed. Should something of a volume be there by "
        "its turn, that volume is converged as before. What remains per volume is the "
        "kernel's own work (configfs mkdir/symlink/write) and rtslib's storage-object "
        "setup."]


def datapath(rep) -> list[str]:
    d = rep.s.get("datapath") or {}
    mine, tc = d.get("iscsiattach") or {}, d.get("targetcli") or {}
    ratios = []
    for job in ("seq_read_1m", "seq_write_1m", "rand_read_4k", "rand_write_4k"):
        key = "mib_s" if "1m" in job else "iops"
        a, b = (mine.get(job) or {}).get(key), (tc.get(job) or {}).get(key)
        if a and b:
            ratios.append(a / b)
    if not ratios:
        return []
    lo, hi = min(ratios), max(ratios)
    verdict = ("on par with" if lo >= 0.9 else "behind")
    return [f"* Item 5: our export ran at {lo:.2f}x–{hi:.2f}x of targetcli's default LUN "
            f"({verdict} it). Both are write-back and neither is the slow kind (synchronous "
            "fileio). targetcli's default fileio is buffered: it serves reads and absorbs "
            "writes in the storage node's page cache. Ours is asynchronous direct I/O "
            "(aio, O_DIRECT), which skips that cache — no double caching with the host's "
            "own page cache, and no memory pressure on a node with thousands of exports. "
            "Here the backing file sits on ext4 on a loop device whose file lives in the "
            "guest's RAM (tmpfs): every direct I/O crosses ext4, the loop driver and a "
            "copy into tmpfs in an emulated CPU, while a buffered read or write stops at "
            "the page cache — so this VM favours buffered fileio. On a real disk or LV "
            "(iblock, which volumes on LVM or block devices use) the direct path is the "
            "usual choice; measuring that needs real hardware, not this VM."]


def section(rep) -> str:
    lines = control(rep) + host(rep) + restore(rep) + datapath(rep)
    if not lines:
        return ""
    return "\n## What fell short, and why\n\n" + "\n".join(lines) + "\n"
