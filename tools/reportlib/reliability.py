"""Renderers for docs/reliability.md and docs/node-vm.md: each turns one
suite's committed JSON into the Markdown a section shows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.functional import dos


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def dos_table(paths: list[Path]) -> str:
    """tools/dos-suite's results (the text around says which run)."""
    return "\n\n".join(dos.table(_load(p)["results"], markdown=True) for p in paths)


NODE_FAULTS = (("node-restart", "`systemctl restart iscsiattachd`"),
               ("node-reboot", "`systemctl reboot`"),
               ("node-power-cut", "power cut (qemu SIGKILL, restarted)"))


def node_hosts(paths: list[Path]) -> str:
    """tools/node-vm --hosts: the fault table and fio's verdict."""
    data = _load(paths[0])
    steps = {s["name"]: s for s in data["steps"]}
    rows = ["| fault | API ready | first I/O | longest gap | probe errors | fio "
            "| device, session, 16 MiB | step |", "|---|---|---|---|---|---|---|---|"]
    start = steps["start-load"]["evidence"]
    for name, label in NODE_FAULTS:
        if name not in steps:
            continue
        s, e = steps[name], steps[name]["evidence"]
        same = ", ".join(["same" if e.get("device") == start["device"] else e.get("device", "?"),
                          "same" if e.get("session") == start["session"] else "new",
                          "unchanged" if e.get("data_unchanged") else "CHANGED"])
        rows.append(f"| {label} | {_s(e.get('api_ready_s'))} | {_s(e.get('first_io_after_s'))} "
                    f"| {_s(e.get('longest_stall_s'))} | {e.get('probe_errors', '-')} "
                    f"| {e.get('fio', '-')} | {same} | {_verdict(s)} |")
    if "host-reboot" in steps:
        s, e = steps["host-reboot"], steps["host-reboot"]["evidence"]
        rows.append(f"| the host's own reboot | - | logged in again "
                    f"{_s(e.get('logged_in_again_s'))} after the reboot command | - | - "
                    f"| stopped before | {e.get('device', '?')}, 16 MiB "
                    f"{'unchanged' if s['pass'] else 'see the step'} | {_verdict(s)} |")
    fio = steps.get("fio-verdict", {}).get("evidence", {})
    tail = (f"\nfio at the end: error {fio.get('error', '?')}, {fio.get('written_mib', '?')} MiB "
            f"written and {fio.get('verified_mib', '?')} MiB read back and verified in "
            f"{fio.get('runtime_s', '?')} s." if fio else "")
    head = (f"{data['form']} form at {data.get('commit') or '?'}, "
            f"{'every step passed' if data['pass'] else 'FAILED: ' + ', '.join(data['failed'])}"
            f" ({data.get('wall_s', '?')} s in all):\n\n")
    return head + "\n".join(rows) + "\n" + tail


def _verdict(step: dict[str, Any]) -> str:
    return "PASS" if step["pass"] else "FAIL"


def node_boot(paths: list[Path]) -> str:
    """tools/node-vm --full: power-on to ready per number of exports, from
    each file's reboot check (10 exports) and its boot-N-exports check."""
    rows = ["| exports | power-on to ready | iscsiattachd start to ready | first reconcile "
            "| multi-user | check |", "|---|---|---|---|---|---|"]
    seen: set[int] = set()
    for path in paths:
        data = _load(path)
        for check in data["checks"]:
            e = check.get("evidence") or {}
            if not (check["name"] == "reboot" or check["name"].startswith("boot-")) or \
                    "power_on_to_ready_s" not in e or e["exports"] in seen:
                continue
            seen.add(e["exports"])
            mono = e["iscsiattachd_monotonic_s"]
            start_to_ready = mono["ActiveEnterTimestampMonotonic"] - \
                mono["ExecMainStartTimestampMonotonic"]
            rows.append(f"| {e['exports']} | {_s(e['power_on_to_ready_s'])} "
                        f"| {_s(start_to_ready)} | {_first_reconcile(e)} "
                        f"| {_s(e.get('multi_user_s'))} | {_verdict(check)} |")
    return "\n".join(rows)


def _first_reconcile(e: dict[str, Any]) -> str:
    """Its own duration (the log line's last figure) and which path it took."""
    line = e.get("first_reconcile") or ""
    took = line.rsplit(", ", 1)[-1].rstrip("s") if line else ""
    path = "restore" if e.get("restore_begins_s") is not None else "converge (LIO not empty)"
    return f"{took} s, {path}" if took else path


def reboot(paths: list[Path]) -> str:
    """tools/reboot-test: both boots' verdicts."""
    d = _load(paths[0])
    before, after = d["before"], d["after"]
    return ("| commit | cut | volumes attached and written | after the cut: daemon serving "
            "| volumes confirmed, same data | file written without fsync | verdict |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {d['commit']} | {d['power_cut']} | {before['volumes']} "
            f"| {_s(after.get('daemon_ready_s'))} after its start | {after['volumes']} "
            f"| {'survived' if after.get('unsynced_canary_survived') else 'lost'} "
            f"| {'PASS' if before['ok'] and after['ok'] else 'FAIL'} |")


def crash_suite(paths: list[Path]) -> str:
    """tools/crash-suite: its totals, and the failures by the suite's own rule."""
    d = _load(paths[0])
    failures = d["failures"]
    rows = ["| commit | kills | at fault points (points) | random, under load (mid-request) "
            "| load requests | data blocks verified | median restart | failures | time |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {d.get('commit') or '?'} | {d['kills']} | {d['point_kills']} "
            f"({d['points_covered']}) | {d['random_kills']} ({d['random_kills_mid_request']}) "
            f"| {d['load_ops']} | {d.get('data_blocks_verified', '-')} "
            f"| {_s(d.get('restart_seconds_median'))} | {len(failures)} "
            f"| {d['seconds'] / 60:.0f} min |"]
    for f in failures[:10]:
        rows.append(f"\n- FAIL {f['where']}: " + "; ".join(f["problems"])[:300])
    return "\n".join(rows)


RENDERERS = {"dos": dos_table, "node-hosts": node_hosts, "node-boot": node_boot,
             "reboot": reboot, "crash-suite": crash_suite}
