"""Shared helpers: prefixes, timing, percentiles, results."""
from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iscsiattach.attachments.reconciler import RECONCILER_OPTS

_RECONCILER_DEFAULTS = {opt.name: opt.default for opt in RECONCILER_OPTS}
DEFAULT_INTERVAL: int = _RECONCILER_DEFAULTS["interval"]             # seconds
DEFAULT_FULL_CHECK: int = _RECONCILER_DEFAULTS["full_check_interval"]
STEADY_INTERVAL = 6     # the bench's periodic runs, in the defaults' proportions

WORK = Path("/tmp/iscsiattach-bench")          # guest tmpfs (outside: nothing)
# Our daemon's prefix and one prefix per baseline: each cleans only its own.
PREFIX_OURS = "iqn.2010-10.org.iscsiattach.bench:"
PREFIX_RTS = "iqn.2010-10.org.iscsiattach.bench-rtslib:"
PREFIX_TCLI = "iqn.2010-10.org.iscsiattach.bench-targetcli:"
PREFIX_CTL = "iqn.2010-10.org.iscsiattach.bench-targetctl:"
PREFIX_FILL = "iqn.2010-10.org.iscsiattach.bench-fill:"
BASELINE_INITIATOR = "iqn.1994-05.com.example:bench-baseline"


def throwaway_secret() -> str:
    """CHAP secret for baseline objects only (targetcli puts it on argv)."""
    return "tw" + secrets.token_hex(8)


def summary(times: list[float]) -> dict[str, Any]:
    """p50/p95/min/max in milliseconds, and the sample count."""
    if not times:
        return {"n": 0}
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(times), "p50_ms": round(statistics.median(ordered) * 1e3, 1),
            "p95_ms": round(p95 * 1e3, 1), "min_ms": round(ordered[0] * 1e3, 1),
            "max_ms": round(ordered[-1] * 1e3, 1),
            "mean_ms": round(statistics.fmean(ordered) * 1e3, 1)}


def timed(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(argv, **kwargs)


class Results:
    """One JSON document, rewritten after every section (a cut run keeps
    what finished)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.data = path, {"meta": meta, "sections": {}}
        self.flush()

    def put(self, section: str, key: str, value: Any) -> None:
        self.data["sections"].setdefault(section, {})[key] = value
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
