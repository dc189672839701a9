"""Profile one restore in-process, in the VM: where the first reconcile's
time goes when LIO holds nothing of ours (cProfile, cumulative and own time).
With ``--steady``, then the periodic pass over the same exports, all up:
first timed without the profiler (wall and this process's CPU time), then
profiled.

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
                            (Portal("127.0.0.1"),))
        try:
            profiled("restore", svc.reconciler.run, exclusive=True)
            if "--steady" in sys.argv:
                w0, c0 = time.perf_counter(), time.process_time()
                report = svc.reconciler.run()
                print(f"steady pass, no profiler: {time.perf_counter() - w0:.2f} s wall, "
                      f"{time.process_time() - c0:.2f} s CPU, {report}", flush=True)
                profiled("steady pass", svc.reconciler.run)
        finally:
            print("removed:", cleanup((PREFIX_OURS,), ("volume-",), scan_core=False))


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
