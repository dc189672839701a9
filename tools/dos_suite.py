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


# The servers --server can name. "ours" is this checkout's daemon; the others
# run the daemon as it was before issue 13 (its tree on PYTHONPATH, given by
# tools/dos-suite in ISCSIATTACH_DOS_BASELINE_SRC): with its own wsgiref
# server, or with cheroot's (tools/dos_candidates.py).
SERVERS = ("ours", "wsgiref", "cheroot")


def _start(server: str, root: Path):
    if server == "ours":
        return dos.start_daemon(root)
    src = os.environ.get("ISCSIATTACH_DOS_BASELINE_SRC")
    if not src:
        raise SystemExit(f"dos-suite: --server {server} needs ISCSIATTACH_DOS_BASELINE_SRC")
    env = {"PYTHONPATH": src}
    if server == "wsgiref":
        command = [sys.executable, "-m", "iscsiattach.cmd.daemon"]
    else:
        command = [sys.executable, str(Path(__file__).with_name("dos_candidates.py")), server]
    return dos.start_daemon(root, command=command, env=env)


def _run_server(server: str, names: list[str], scale, out: Path, meta: dict) -> list[dict]:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"iscsiattach-dos-{server}-"))
    daemon, target = _start(server, root)
    print(f"dos-suite: [{server}] daemon pid {target.pid_of()} serving HTTPS on port "
          f"{target.port} ({time.monotonic() - started:.0f} s to start)", flush=True)
    results: list[dict] = []
    try:
        for name in names:
            t = time.monotonic()
            r = dos.run(target, name, scale)
            r["seconds"] = round(time.monotonic() - t, 1)
            r["server"] = server
            results.append(r)
            print(f"[{server}] {name}: {r['verdict']} ({r['seconds']:.0f} s) "
                  f"{dos.goal_report(r)}", flush=True)
            for line in (r.get("log_bad") or [])[:5]:
                print(f"    bad log line: {line[:200]}", flush=True)
            out.write_text(json.dumps({**meta, "server": server, "results": results},
                                      indent=2) + "\n")
    finally:
        daemon.stop()
    print(f"\n[{server}]\n" + dos.table(results), flush=True)
    return results


def render(paths: list[str]) -> int:
    """Markdown tables from saved results (what docs/reliability.md shows)."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        print(f"{data.get('server', 'ours')} ({data['scale']} scale, commit "
              f"{(data.get('commit') or '?')[:10]}):\n")
        print(dos.table(data["results"], markdown=True) + "\n")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--render"]:
        return render(sys.argv[2:])
    ap = argparse.ArgumentParser(prog="tools/dos-suite")
    ap.add_argument("--quick", action="store_true", help="the CI scale (test_dos.py)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--server", action="append", choices=SERVERS,
                    help="the server(s) to attack, one after the other (default: ours)")
    args = ap.parse_args()
    scale = dos.QUICK if args.quick else dos.FULL
    names = dos.names(scale)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            ap.error(f"unknown scenarios {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted]
    servers = args.server or ["ours"]
    out_dir = Path(os.environ.get("ISCSIATTACH_RESULTS", "results/dos"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"dos-suite: attacker soft RLIMIT_NOFILE {dos.raise_own_nofile()}", flush=True)
    started = time.monotonic()
    meta = {"scale": scale.name, "scale_params": dataclasses.asdict(scale), "commit": _commit(),
            "baseline_commit": os.environ.get("ISCSIATTACH_DOS_BASELINE"),
            "kernel": platform.release(), "cpus": os.cpu_count(),
            "daemon_nofile": dos.DAEMON_NOFILE,
            "goals": {"ratio_max": dos.RATIO_MAX, "rss_max_mib": dos.RSS_MAX_MIB,
                      "fd_slack": dos.FD_SLACK, "fd_within_s": dos.FD_WITHIN_S,
                      "log_rate_max": dos.LOG_RATE_MAX}}
    failed = False
    for server in servers:
        suffix = "" if servers == ["ours"] else f"-{server}"
        out = out_dir / f"dos-{scale.name}{suffix}.json"
        results = _run_server(server, names, scale, out, meta)
        failed |= any(r["failed"] for r in results)
        print(f"dos-suite: [{server}] {len(results)} scenarios; raw results in {out}",
              flush=True)
    print(f"dos-suite: done in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
