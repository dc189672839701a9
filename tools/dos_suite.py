"""The denial-of-service suite, full form (run by tools/dos-suite in the VM).

Starts the real daemon (HTTPS, token auth, RLIMIT_NOFILE 1024) through the
functional tests' harness, runs every scenario of tests/functional/dos.py
(each with its own unloaded baseline), prints the table and writes the raw
results to $ISCSIATTACH_RESULTS/dos-<scale>.json. Exit status 1 if a goal
was missed. --quick runs the CI scale (tests/functional/test_dos.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.functional import dos  # noqa: E402


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip() or None
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(prog="tools/dos-suite")
    ap.add_argument("--quick", action="store_true", help="the CI scale (test_dos.py)")
    ap.add_argument("--only", help="comma-separated scenario names")
    args = ap.parse_args()
    scale = dos.QUICK if args.quick else dos.FULL
    names = dos.names(scale)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            ap.error(f"unknown scenarios {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted]
    out_dir = Path(os.environ.get("ISCSIATTACH_RESULTS", "results/dos"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"dos-{scale.name}.json"
    print(f"dos-suite: attacker soft RLIMIT_NOFILE {dos.raise_own_nofile()}", flush=True)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="iscsiattach-dos-"))
    daemon, target = dos.start_daemon(root)
    print(f"dos-suite: daemon pid {target.pid_of()} serving HTTPS on port {target.port} "
          f"({time.monotonic() - started:.0f} s to start)", flush=True)
    meta = {"scale": scale.name, "scale_params": dataclasses.asdict(scale), "commit": _commit(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "daemon_nofile": dos.DAEMON_NOFILE,
            "goals": {"ratio_max": dos.RATIO_MAX, "rss_max_mib": dos.RSS_MAX_MIB,
                      "fd_slack": dos.FD_SLACK, "fd_within_s": dos.FD_WITHIN_S,
                      "log_rate_max": dos.LOG_RATE_MAX}}
    results = []
    try:
        for name in names:
            t = time.monotonic()
            r = dos.run(target, name, scale)
            r["seconds"] = round(time.monotonic() - t, 1)
            results.append(r)
            print(f"{name}: {r['verdict']} ({r['seconds']:.0f} s) {dos.goal_report(r)}",
                  flush=True)
            for line in (r.get("log_bad") or [])[:5]:
                print(f"    bad log line: {line[:200]}", flush=True)
            meta["seconds"] = round(time.monotonic() - started)
            out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    finally:
        daemon.stop()
    print()
    print(dos.table(results))
    print(f"\ndos-suite: {len(results)} scenarios in {time.monotonic() - started:.0f} s; "
          f"raw results in {out}")
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
