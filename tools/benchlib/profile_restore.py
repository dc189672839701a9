"""Profile one restore in-process, in the VM: where the first reconcile's
time goes when LIO holds nothing of ours (cProfile, cumulative and own time).
With ``--steady``, the restore runs without the profiler and the periodic
pass over the same exports, all up, is what is looked at: four passes
timed without the profiler (wall and this process's CPU time), then one
profiled; full comparisons in turns as the daemon makes them with its
default options.

    tools/vm -- env PYTHONPATH=tools:. .venv/bin/python -m benchlib.profile_restore \\
        results/bench/prepop-full/state-1000 [--steady]

STATE is a state directory made by benchlib.populate (tools/bench makes them).
Not a benchmark (the profiler slows Python down): it says where, not how fast.
Everything it builds is removed at the end, by the bench's own prefix.
"""
from __future__ import annotations

import cProfile
import pstats
import shutil
import sys
import time
from pathlib import Path

from benchlib import populate
from benchlib.common import PREFIX_OURS, WORK
from benchlib.lio_cleanup import cleanup
from tests.support.scratch import scratch_fs


def main() -> None:
    from iscsiattach.attachments.wiring import wire_services
    from iscsiattach.model import Portal
    from iscsiattach.targets.lio import LioBackend
    from iscsiattach.volumes.file import FileBackend
    with scratch_fs(WORK, 4 << 30) as mnt:
        state = WORK / "profile-state"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(Path(sys.argv[1]), state)
        print("volume files:", populate.make_volume_files(state), flush=True)
        lio = LioBackend(prefix=PREFIX_OURS, write_back=True, lock_path=str(state / "locks"))
        svc = wire_services(str(state), lio, FileBackend(str(mnt / "ours")),
                            (Portal("127.0.0.1"),), full_every=default_full_every())
        try:
            if "--steady" not in sys.argv:
                profiled("restore", svc.reconciler.run, exclusive=True)
                return
            timed("restore", svc.reconciler.run, exclusive=True)
            for _ in range(4):
                timed("steady pass", svc.reconciler.run)
            profiled("steady pass", svc.reconciler.run)
        finally:
            print("removed:", cleanup((PREFIX_OURS,), ("volume-",), scan_core=False))


def default_full_every() -> int:
    """Runs per full comparison as the daemon sets it with default options."""
    from benchlib.common import DEFAULT_FULL_CHECK, DEFAULT_INTERVAL
    from iscsiattach.attachments.reconciler import full_check_share
    return full_check_share(DEFAULT_INTERVAL, DEFAULT_FULL_CHECK)


def timed(what: str, fn, *args, **kwargs) -> None:
    w0, c0 = time.perf_counter(), time.process_time()
    report = fn(*args, **kwargs)
    print(f"{what}, no profiler: {time.perf_counter() - w0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU, {report}", flush=True)


def profiled(what: str, fn, *args, **kwargs) -> None:
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    report = prof.runcall(fn, *args, **kwargs)
    print(f"{what} under the profiler: {time.perf_counter() - t0:.1f} s, {report}", flush=True)
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
