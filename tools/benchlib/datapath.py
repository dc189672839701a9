"""Item 5: fio through the attached device vs the raw backing, and vs the
same LUN made by targetcli with its defaults (buffered fileio): each job
several times, the targets taking turns job by job, so a change in the
shared machine's load falls on all of them alike."""
from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any

JOBS = {"seq_read_1m": ("read", "1M"), "seq_write_1m": ("write", "1M"),
        "rand_read_4k": ("randread", "4k"), "rand_write_4k": ("randwrite", "4k")}
ORDER = ("seq_write_1m", "seq_read_1m", "rand_write_4k", "rand_read_4k")


def fio(target: str, job: str, runtime: int, size: str) -> dict[str, Any]:
    rw, bs = JOBS[job]
    argv = ["fio", "--name", job, "--filename", target, "--rw", rw, "--bs", bs,
            "--iodepth", "32", "--ioengine", "libaio", "--direct", "1", "--size", size,
            "--runtime", str(runtime), "--time_based", "--ramp_time", "1",
            "--output-format", "json"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=runtime * 10 + 120)
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-300:]}
    data = json.loads(res.stdout[res.stdout.index("{"):])["jobs"][0]
    side = data["read"] if "read" in rw else data["write"]
    return {"iops": round(side["iops"], 1), "mib_s": round(side["bw_bytes"] / 2**20, 2),
            "clat_p50_us": round(side["clat_ns"]["percentile"].get("50.000000", 0) / 1e3, 1),
            "clat_p99_us": round(side["clat_ns"]["percentile"].get("99.000000", 0) / 1e3, 1)}


def fill(target: str, size: str) -> None:
    """Write the region once so reads are not of holes."""
    subprocess.run(["fio", "--name", "fill", "--filename", target, "--rw", "write", "--bs",
                    "1M", "--iodepth", "16", "--ioengine", "libaio", "--direct", "1",
                    "--size", size], capture_output=True, check=True, timeout=1800)


FIGURES = ("iops", "mib_s", "clat_p50_us", "clat_p99_us")


def interleaved(targets: dict[str, str], rounds: int, runtime: int,
                size: str) -> dict[str, dict[str, Any]]:
    """Every job ``rounds`` times on every target, in turns: round r runs
    job 1 on each target (the order rotating with r), then job 2, ... Per
    target and job: the median of each figure, its min and max, and the
    runs themselves."""
    names = list(targets)
    for name in names:
        fill(targets[name], size)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {j: [] for j in ORDER} for n in names}
    for r in range(rounds):
        turn = names[r % len(names):] + names[:r % len(names)]
        for job in ORDER:
            for name in turn:
                runs[name][job].append(fio(targets[name], job, runtime, size))
    out: dict[str, dict[str, Any]] = {
        name: {job: _median(got) for job, got in jobs.items()} for name, jobs in runs.items()}
    for figures in out.values():
        # A failed job marks its target: tools/bench --check and the report see it.
        failed = [f"{job}: {f['error']}" for job, f in figures.items() if "error" in f]
        if failed:
            figures["error"] = "; ".join(failed)[:300]
    return out


def _median(got: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [g for g in got if "error" not in g]
    out: dict[str, Any] = {"runs": got, "n": len(ok)}
    if len(ok) < len(got):
        out["error"] = next(g["error"] for g in got if "error" in g)
    for key in FIGURES:
        values = [g[key] for g in ok]
        if values:
            out[key] = round(statistics.median(values), 1)
            out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    return out
