"""The benchmark run, inside the VM (tools/bench boots it).

``python -m benchlib.run PROFILE PREPOP_DIR OUT_JSON``. Per stage N
(existing exports), and after the first stage ours and targetctl restoring
the same N exports in turns, each on an LIO empty of both (item 4):
iscsiattachd restores N exports from its store (item 4), idles (item 6),
serves attachment create/delete (item 1) while the two baselines do the
same LIO work on the same kernel with the same N exports present (item 1);
items 3 and 5 at the first stage, item 2 at the concurrency stage; a
restart with the exports up (the steady reconcile pass). Everything made
is removed at the end, by our prefixes only.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchlib import ours, populate, restore, tcli
from benchlib.common import (
    DEFAULT_FULL_CHECK,
    DEFAULT_INTERVAL,
    PREFIX_CTL,
    PREFIX_OURS,
    PREFIX_RTS,
    PREFIX_TCLI,
    STEADY_INTERVAL,
    WORK,
    Results,
    log,
    summary,
)
from benchlib.lio_cleanup import census, cleanup
from benchlib.profiles import PROFILES, Profile
from iscsiattach.attachments.reconciler import full_check_share
from tests.support.scratch import scratch_fs, sparse_file

# benchlib and tests.support, for the worker processes.
TOOLS_AND_TOP = Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2]
BASELINE_SO = ("bench-rts-", "bench-tcli-", restore.SO_PREFIX)


class Run:
    def __init__(self, profile: Profile, prepop: Path, out: Path, mnt: Path) -> None:
        self.p, self.prepop, self.mnt = profile, prepop, mnt
        self.res = Results(out, meta(profile))
        self.daemon: ours.Daemon | None = None
        self.spares: list[str] = []
        # Time left for the slow baselines; the final cleanup keeps a reserve.
        self.deadline = time.monotonic() + profile.budget_s - profile.reserve_s
        self.res.data["meta"]["budget_s"] = profile.budget_s

    # -- helpers -----------------------------------------------------------
    def section(self, name: str, key: str, fn, *args) -> Any:
        if time.monotonic() > self.deadline and name != "cleanup":
            log(f"{name}/{key} skipped: the run's time budget is spent")
            self.res.put(name, key, {"skipped": "time budget of the run spent"})
            return None
        log(f"{name}/{key} ...")
        t0 = time.perf_counter()
        try:
            value = fn(*args)
        except Exception as exc:     # noqa: BLE001 - one item must not stop the run
            traceback.print_exc()
            value = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        if isinstance(value, dict):
            value.setdefault("bench_wall_s", round(time.perf_counter() - t0, 1))
        self.res.put(name, key, value)
        log(f"{name}/{key} done in {time.perf_counter() - t0:.1f}s")
        return value

    def files(self, kind: str, count: int) -> list[Path]:
        return [sparse_file(self.mnt / kind / f"{kind}-{i}.img", 1 << 30) for i in range(count)]

    # -- item 4: restore, ours and targetctl in turns ----------------------------
    def restore_pair(self, n: int) -> dict[str, Any]:
        """Ours and targetctl each restore the same N exports, ``restore_rounds``
        times, taking turns (the first alternating by round), each on an LIO
        holding no object of either (counted before every restore)."""
        saved = restore.make_saveconfig(n, WORK, self.mnt / "ctl")
        rounds = []
        try:
            for r in range(self.p.restore_rounds):
                order = ("targetctl", "ours") if r % 2 == 0 else ("ours", "targetctl")
                got: dict[str, Any] = {"order": list(order)}
                for who in order:
                    got[f"lio_before_{who}"] = _census_both()
                    got[who] = self._restore_ctl(saved) if who == "targetctl" \
                        else self._restore_ours(n)
                rounds.append(got)
        finally:
            saved.unlink()
        return {"n": n, "rounds": rounds,
                "ours_s": summary([g["ours"]["seconds"] for g in rounds]),
                "targetctl_s": summary([g["targetctl"]["seconds"] for g in rounds
                                        if g["targetctl"].get("errors") == 0])}

    def restore_pairs(self) -> None:
        cleanup((PREFIX_OURS,), ("volume-",), scan_core=False)
        for n in self.p.restore_ns:
            self.section("restore_pair", str(n), self.restore_pair, n)

    @staticmethod
    def _restore_ctl(saved: Path) -> dict[str, Any]:
        out = restore.targetctl_restore(saved)
        t0 = time.perf_counter()
        out["removed"] = cleanup((PREFIX_CTL,), (restore.SO_PREFIX,))
        out["cleanup_s"] = round(time.perf_counter() - t0, 2)
        return out

    def _restore_ours(self, n: int) -> dict[str, Any]:
        daemon, _, _ = self._fresh_daemon(n, "restore")
        try:
            ready = daemon.start()
        finally:
            daemon.stop()
        t0 = time.perf_counter()
        removed = cleanup((PREFIX_OURS,), ("volume-",), scan_core=False)
        return {"seconds": round(ready, 2), "reconcile": daemon.last_reconcile(),
                "removed": removed, "cleanup_s": round(time.perf_counter() - t0, 2)}

    # -- a stage -------------------------------------------------------------
    def start_stage(self, n: int) -> dict[str, Any]:
        removed = cleanup((PREFIX_OURS,), ("volume-",), scan_core=False)
        self.daemon, info, made = self._fresh_daemon(n, "stage")
        self.spares = info["spares"]
        ready = self.daemon.start()
        return {"n": n, "ready_s": round(ready, 2), "reconcile": self.daemon.last_reconcile(),
                "volume_files": made, "ours_removed_before": removed}

    def _fresh_daemon(self, n: int, what: str) -> tuple[ours.Daemon, dict[str, Any], int]:
        """A daemon (not started) on a private copy of the prepared store of
        N exports, its volume files made; the store's facts; files made."""
        state = WORK / f"{what}-{n}" / "state"
        info = ours.prepare_state(self.prepop / f"state-{n}", state)
        made = populate.make_volume_files(state)
        logs = self.res.path.parent / f"logs-{self.p.name}"
        logs.mkdir(exist_ok=True)
        name = f"daemon-{n}.log" if what == "stage" else f"{what}-{n}.log"
        return ours.Daemon(state, self.mnt / "ours", logs / name), info, made

    def restart(self) -> dict[str, Any]:
        """A stop and start with the exports up: the new process's first run
        compares every volume in full."""
        self.daemon.stop()
        ready = self.daemon.start()
        return {"ready_s": round(ready, 2), "reconcile": self.daemon.last_reconcile()}

    def steady(self) -> dict[str, Any]:
        """The periodic runs as the daemon makes them with its defaults, in
        a shorter time: the same share of volumes compared in full per run
        (``full_check_interval / interval`` runs per round), the runs
        STEADY_INTERVAL s apart instead of the default interval. One whole
        round after the first run (or the profile's steady_runs); each run's
        wall and CPU time as logged."""
        self.daemon.stop()
        share = full_check_share(DEFAULT_INTERVAL, DEFAULT_FULL_CHECK)
        runs = self.p.steady_runs or share
        self.daemon = ours.Daemon(
            self.daemon.state, self.mnt / "ours", self.daemon.log_path, interval=STEADY_INTERVAL,
            extra=f"[reconciler]\nfull_check_interval = {STEADY_INTERVAL * share}\n")
        before = len(self.daemon.reconciles())
        self.daemon.start()
        deadline = time.monotonic() + (runs + 2) * (STEADY_INTERVAL + 600)
        while len(self.daemon.reconciles()) < before + 1 + runs:
            if time.monotonic() > deadline or self.daemon.proc.poll() is not None:
                raise RuntimeError("the daemon made too few reconcile runs")
            time.sleep(1)
        passes = self.daemon.reconciles()[before + 1:before + 1 + runs]
        cpu = sum(p["cpu_seconds"] for p in passes) / len(passes)
        return {"interval_s": STEADY_INTERVAL, "runs_per_round": share, "passes": passes,
                "whole_round": runs >= share,
                "cpu_per_pass_mean_s": round(cpu, 3),
                "seconds": summary([p["seconds"] for p in passes]),
                "cpu_share_at_default_interval_pct": round(100 * cpu / DEFAULT_INTERVAL, 2)}

    def rts(self, n: int, samples: int) -> dict[str, Any]:
        plan = {"samples": samples, "files": [str(f) for f in self.files("rts", samples)],
                "deadline": self.deadline,      # same clock (CLOCK_MONOTONIC) in the worker
                "save": str(WORK / "private" / "saveconfig.json"), "prefix": PREFIX_RTS,
                "portal": "127.0.0.1"}
        (WORK / "private").mkdir(mode=0o700, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, TOOLS_AND_TOP))}
        res = subprocess.run([sys.executable, "-m", "benchlib.rts_worker", json.dumps(plan)],
                             capture_output=True, text=True, env=env, timeout=7200)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip()[-800:])
        raw = json.loads(res.stdout.strip().splitlines()[-1])
        out = {k: summary(v) for k, v in raw.items()
               if k not in ("save_bytes", "samples_done", "delete_save_estimated")}
        out["save_bytes"] = raw["save_bytes"][0]
        out["delete_save_estimated"] = len(raw.get("delete_save_estimated", []))
        return out

    def stage(self, n: int) -> None:
        p = self.p
        self.section("restore_ours", str(n), self.start_stage, n)
        self.section("footprint", str(n), ours.footprint, self.daemon.proc.pid, p.idle_window)
        if p.reconcile_only:
            self.section("restart_ours", str(n), self.restart)
            self.section("steady_ours", str(n), self.steady)
            self.daemon.stop()
            return
        self.section("control_ours", str(n), ours.control_plane, self.daemon.token,
                     self.spares[:4], p.ours_samples, self.daemon.proc.pid)
        self.section("control_rtslib", str(n), self.rts, n, p.rts_samples.get(n, 1))
        hr = self.host_items() if n == p.stages[0] else None
        if n == p.concurrency_stage:
            for c in p.clients:
                cycles = max(1, p.ops_per_level // (2 * c))
                self.section("concurrency", str(c), ours.concurrency, self.daemon.token,
                             self.spares[:c], c, cycles)
        # The slowest baseline, cut short (and estimated) past its time cap. At
        # the first stage its first export also carries the data-path run.
        cap = min(self.deadline, time.monotonic() + p.tcli_cap_s.get(n, 600))
        between = self._fio_between(hr) if hr else None
        out = self.section("control_targetcli", str(n), tcli.control_plane, PREFIX_TCLI,
                           self.files("tcli", 1), p.tcli_samples.get(n, 1), cap,
                           hostrun_initiator(), between)
        if hr and isinstance(out, dict):
            got = out.pop("between", None) or {
                name: {"error": "targetcli's export was not completed in its time cap"}
                for name in ("raw", "iscsiattach", "targetcli")}
            for name, figures in got.items():
                self.res.put("datapath", name, figures)
        if n != p.stages[0]:
            self.section("restart_ours", str(n), self.restart)
            self.section("steady_ours", str(n), self.steady)
        self.daemon.stop()

    def host_items(self):
        """Item 3 (ours and the floor); item 5 runs while targetcli's LUN of item 1 (b) stands."""
        from benchlib import hostrun
        hr = hostrun.HostRun(self.p, self.daemon, self.spares, self.mnt)
        for key, fn, *args in (("floor", hr.floor), ("startup", hr.startup),
                               ("iscsiattach", hr.in_process, False),
                               ("brick_as_is", hr.in_process, True),
                               ("cli", hr.cli)):
            self.section("e2e", key, fn, *args)
        return hr

    @staticmethod
    def _fio_between(hr):
        def run(iqn: str, secret: str):
            log("datapath: raw, iscsiattach and targetcli in turns ...")
            try:
                return hr.fio_interleaved(iqn, secret)
            except Exception as exc:   # noqa: BLE001 - recorded, the baseline goes on
                traceback.print_exc()
                error = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                return {name: error for name in ("raw", "iscsiattach", "targetcli")}
        return run

    def main(self) -> None:
        self.section("setup", "targetcli", lambda: tcli.setup() or {"ok": True})
        for i, n in enumerate(self.p.stages):
            if i == 1:      # after the first stage: its items show early whether they run
                self.restore_pairs()
            try:
                self.stage(n)
            finally:
                if self.daemon:
                    self.daemon.stop()
        if len(self.p.stages) < 2 and self.p.restore_ns:
            self.restore_pairs()
        self.section("cleanup", "all", final_cleanup)
        self.res.data["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.res.flush()


def _census_both() -> dict[str, dict[str, int]]:
    return {"ours": census((PREFIX_OURS,), ("volume-",)),
            "targetctl": census((PREFIX_CTL,), (restore.SO_PREFIX,))}


def hostrun_initiator() -> str:
    from benchlib import hostrun
    return hostrun.initiator_name()


def final_cleanup() -> dict[str, Any]:
    out = {"baselines": cleanup((PREFIX_RTS, PREFIX_TCLI, PREFIX_CTL), BASELINE_SO),
           "ours": cleanup((PREFIX_OURS,), ("volume-",), scan_core=False)}
    hostrun_cleanup()
    return out


def hostrun_cleanup() -> None:
    from benchlib import hostrun
    hostrun.forget_nodes((PREFIX_OURS, PREFIX_TCLI))


def meta(profile: Profile) -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "")
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]

    def version(cmd: list[str]) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else "?"
    from importlib.metadata import version as pkg
    return {"profile": profile.name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernel": platform.release(), "cpu": cpu, "vcpus": os.cpu_count(),
            "mem_mib": int(mem) // 1024,
            "accel": "TCG" if "QEMU" in cpu else "KVM or other",
            "python": platform.python_version(), "rtslib_fb_venv": pkg("rtslib-fb"),
            "os_brick": pkg("os-brick"),
            "targetcli": version(["dpkg-query", "-W", "-f", "${Version}", "targetcli-fb"]),
            "rtslib_fb_debian": version(["dpkg-query", "-W", "-f", "${Version}",
                                         "python3-rtslib-fb"]),
            "fio": version(["fio", "--version"]),
            "commit": version(["git", "-C", str(Path(__file__).resolve().parents[2]),
                               "rev-parse", "--short", "HEAD"])}


def main() -> int:
    profile, prepop, out = PROFILES[sys.argv[1]], Path(sys.argv[2]), Path(sys.argv[3])
    WORK.mkdir(parents=True, exist_ok=True, mode=0o700)
    with scratch_fs(WORK, 16 << 30) as mnt:
        try:
            Run(profile, prepop, out, mnt).main()
        finally:
            final_cleanup()
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
