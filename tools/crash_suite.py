"""The long form of the crash tests (run by tools/crash-suite inside the VM).

Phase 1: every fault-point scenario of tests/functional/crash.py, ROUNDS
times. Phase 2: random SIGKILLs while a mixed load runs (crash_load.py):
the daemon is killed after a random 1-5 s, restarted; every client
retries the request it lost, then the invariants are checked, every
change the daemon acknowledged is compared field by field with what the
client was told, and the data a live session wrote to one volume before
each kill is read back (crash_data.py). Phase 2 goes on until the total
number of kills reaches --kills or the time is up.
Prints a summary and writes crash-suite.json to $ISCSIATTACH_RESULTS.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.functional.crash import SCENARIOS, Ctx, Outside, cleanup, run_scenario  # noqa: E402
from tests.functional.crash_data import DataVolume  # noqa: E402
from tests.functional.crash_load import Worker, acknowledged_problems, held_ids  # noqa: E402
from tests.functional.daemon import Daemon, call  # noqa: E402
from tests.functional.forkserver import ForkServer  # noqa: E402
from tests.support.scratch import mount_scratch  # noqa: E402


class Results:
    def __init__(self, path: Path) -> None:
        self.path, self.started = path, time.monotonic()
        self.kills = 0
        self.by_point: dict[str, int] = {}
        self.random_kills = 0
        self.in_flight = 0          # random kills that cut at least one request short
        self.failures: list[dict] = []
        self.ops = 0
        self.restart_seconds: list[float] = []
        self.data_blocks = 0        # blocks written before a kill and verified after it

    def fail(self, where: str, problems: list[str]) -> None:
        self.failures.append({"where": where, "problems": problems})
        print(f"FAIL {where}: " + "; ".join(problems)[:2000], flush=True)

    def save(self) -> dict:
        rs = sorted(self.restart_seconds)
        out = {"kills": self.kills, "point_kills": self.kills - self.random_kills,
               "random_kills": self.random_kills, "random_kills_mid_request": self.in_flight,
               "by_point": dict(sorted(self.by_point.items())),
               "points_covered": len(self.by_point), "load_ops": self.ops,
               "data_blocks_verified": self.data_blocks, "commit": commit(),
               "failures": self.failures, "seconds": round(time.monotonic() - self.started),
               "restart_seconds_median": rs[len(rs) // 2] if rs else None}
        self.path.write_text(json.dumps(out, indent=2) + "\n")
        return out


def commit() -> str:
    """The commit under test, "+dirty" when the tree has changes."""
    top = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(top)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def phase_points(ctx: Ctx, res: Results, rounds: int, deadline: float) -> None:
    for r in range(rounds):
        for sc in SCENARIOS:
            if time.monotonic() > deadline:
                return
            where = f"round {r + 1} {sc.point} ({sc.name})"
            t = time.monotonic()
            try:
                problems = run_scenario(ctx, sc)
            except Exception:     # noqa: BLE001 - record and go on with a fresh daemon
                problems = [traceback.format_exc(limit=6)]
                _recover(ctx)
            res.kills += 1
            res.by_point[sc.point] = res.by_point.get(sc.point, 0) + 1
            if problems:
                res.fail(where, problems)
            print(f"{where}: {'ok' if not problems else 'FAIL'} "
                  f"({time.monotonic() - t:.0f}s, kills {res.kills})", flush=True)
            res.save()


def _recover(ctx: Ctx) -> None:
    """After a scenario failed halfway: get an unarmed daemon serving again."""
    try:
        if ctx.daemon.proc is not None and ctx.daemon.proc.poll() is None:
            ctx.daemon.kill()
    except Exception:       # noqa: BLE001
        pass
    ctx.daemon.start(timeout=600)


def phase_random(ctx: Ctx, res: Results, kills: int, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    vids = [call("POST", "/volumes", {"volume": {"size": 1, "multiattach": i % 2 == 0}},
                 ctx.token)[1]["volume"]["id"] for i in range(6)]
    data = DataVolume(ctx)
    down = threading.Event()
    workers = [Worker(n, ctx.token, vids, seed=seed + n, down=down) for n in range(4)]
    for w in workers:
        w.start()
    n = 0
    while res.kills < kills and time.monotonic() < deadline:
        n += 1
        data.write_next()
        time.sleep(rng.uniform(1, 5))
        down.set()
        ctx.daemon.kill()
        res.kills += 1
        res.random_kills += 1
        for w in workers:
            w.parked.wait(300)
        res.in_flight += any(w.pending for w in workers)
        t = time.monotonic()
        ctx.daemon.start(timeout=600)
        res.restart_seconds.append(time.monotonic() - t)
        for w in workers:
            w.resolve()
        problems = ctx.outside.problems(held_ids(workers) | ctx.held)
        problems += acknowledged_problems(workers, ctx.outside)
        problems += data.problems()
        problems += [u for w in workers for u in w.tally.unexpected]
        problems += [f"worker {w.n} died: {w.trace}" for w in workers if w.error]
        for w in workers:
            w.tally.unexpected.clear()
        if problems:
            res.fail(f"random kill {n}", problems)
        res.ops = sum(w.tally.ops for w in workers)
        print(f"random kill {n}: {'ok' if not problems else 'FAIL'} (kills {res.kills}, "
              f"mid-request {res.in_flight}, ops {res.ops}, "
              f"restart {res.restart_seconds[-1]:.0f}s)", flush=True)
        res.save()
        down.clear()
        for w in workers:
            w.resume.set()
    down.set()
    for w in workers:
        w.parked.wait(300)
        w.stop.set()
        w.resume.set()
    problems = data.close()
    res.data_blocks = len(data.blocks)
    cleanup(ctx, vids)
    problems += ctx.outside.problems()
    if problems:
        res.fail("after the load, everything deleted", problems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of every fault-point scenario")
    ap.add_argument("--kills", type=int, default=200, help="kills in total, at least")
    ap.add_argument("--minutes", type=float, default=90, help="time budget")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    results = Path(os.environ.get("ISCSIATTACH_RESULTS", "/tmp"))
    root = Path(os.environ.get("ISCSIATTACH_CRASH_DIR", "/tmp/iscsiattach-crash"))
    scratch = mount_scratch(root, 8 << 30)
    res = Results(results / "crash-suite.json")
    server = ForkServer()
    daemon = Daemon(root / "state", scratch / "volumes", forkserver=server)
    daemon.start(timeout=900)
    ctx = Ctx(daemon, Outside(daemon.state, scratch / "volumes"))
    try:
        phase_points(ctx, res, args.rounds, deadline)
        phase_random(ctx, res, args.kills, deadline, args.seed)
    finally:
        out = res.save()
        daemon.stop()
        server.close()
        for vid in ctx.outside.lio.list_exports():
            ctx.outside.lio.unexport(vid)
    print(f"crash suite: {out['kills']} kills ({out['point_kills']} at fault points over "
          f"{out['points_covered']} points, {out['random_kills']} random under load, "
          f"{out['load_ops']} load requests), {len(out['failures'])} failures, "
          f"{out['seconds']}s, median restart {out['restart_seconds_median']}s")
    for point, n in out["by_point"].items():
        print(f"  {point}: {n}")
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
