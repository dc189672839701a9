"""Baseline (b): targetcli-fb one-shot commands (Debian's, system python3).

Each command is its own process, as an operator's script runs it. The
CHAP secret is a throwaway one: targetcli takes it on its command line
(visible in ps) — that is the tool's own behaviour, noted in the report.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.common import BASELINE_INITIATOR, WORK, log, summary, throwaway_secret
from benchlib.lio_cleanup import cleanup

TARGETCLI = "/usr/bin/targetcli"
HOME = WORK / "targetcli-home"
SO_PREFIX = "bench-tcli-"      # this baseline's storage objects, and only these


def _env() -> dict[str, str]:
    return {**os.environ, "TARGETCLI_HOME": str(HOME)}


def ensure_dbus() -> None:
    """targetcli's one-shot mode needs a D-Bus system bus."""
    if Path("/run/dbus/system_bus_socket").exists():
        return
    Path("/run/dbus").mkdir(parents=True, exist_ok=True)
    subprocess.run(["dbus-daemon", "--system", "--fork"], check=True)


def tcli(*args: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([TARGETCLI, *args], capture_output=True, text=True, env=_env(),
                         timeout=1800)
    dt = time.perf_counter() - t0
    if res.returncode != 0 or "error" in res.stdout.lower():
        # Never echo argv: one command carries a (throwaway) secret.
        raise RuntimeError(f"targetcli {args[0]} {args[1] if len(args) > 1 else ''}: "
                           f"{(res.stderr or res.stdout).strip()[:300]}")
    return dt


def setup() -> None:
    """No 0.0.0.0:3260 default portal: every target listens on 127.0.0.1 as
    ours does (a wildcard portal would collide with it)."""
    ensure_dbus()
    HOME.mkdir(parents=True, exist_ok=True, mode=0o700)
    tcli("set", "global", "auto_add_default_portal=false")


def create_commands(name: str, iqn: str, path: str, portal: str,
                    initiator: str = BASELINE_INITIATOR,
                    secret: str | None = None) -> list[tuple[str, ...]]:
    tpg = f"/iscsi/{iqn}/tpg1"
    secret = secret or throwaway_secret()
    return [("/backstores/fileio", "create", f"name={name}", f"file_or_dev={path}"),
            ("/iscsi", "create", iqn),
            (f"{tpg}/portals", "create", portal, "3260"),
            (f"{tpg}/luns", "create", f"/backstores/fileio/{name}"),
            (f"{tpg}/acls", "create", initiator),
            (f"{tpg}/acls/{initiator}", "set", "auth", "userid=bench", f"password={secret}"),
            (tpg, "set", "attribute", "authentication=1", "generate_node_acls=0",
             "demo_mode_write_protect=1")]


def delete_commands(name: str, iqn: str) -> list[tuple[str, ...]]:
    return [("/iscsi", "delete", iqn), ("/backstores/fileio", "delete", name)]


def export(name: str, iqn: str, path: str, portal: str = "127.0.0.1") -> list[float]:
    return [tcli(*cmd) for cmd in create_commands(name, iqn, path, portal)]


def unexport(name: str, iqn: str) -> list[float]:
    return [tcli(*cmd) for cmd in delete_commands(name, iqn)]


def _until(cmds: list[tuple[str, ...]], deadline: float) -> list[float]:
    """Run the calls in order while time remains (at least one)."""
    done: list[float] = []
    for cmd in cmds:
        if done and time.monotonic() + statistics.fmean(done) > deadline:
            break
        done.append(tcli(*cmd))
    return done


def clean(prefix: str) -> int:
    """Remove this baseline's own LIO objects — targets under ``prefix``, storage
    objects named ``SO_PREFIX``… — and nothing else, by plain configfs operations
    (untimed). A sample cut at its time cap, or failed, leaves a half-built
    export: its storage object would hold the backing file, which the next
    stage's sample reuses ("storage object for … already exists")."""
    return cleanup((prefix,), (SO_PREFIX,))


def control_plane(prefix: str, files: list[Path], samples: int,
                  deadline: float = float("inf"), initiator: str = BASELINE_INITIATOR,
                  between: Callable[[str, str], Any] | None = None) -> dict[str, Any]:
    """Create and delete ``samples`` exports. If the run's time budget
    (``deadline``, time.monotonic) would be passed, the remaining calls are
    not run and the sample's time is estimated from the calls that ran
    (per-call time x calls): such samples are counted in ``estimated``.
    ``between(iqn, secret)`` runs, untimed, while the first export stands
    (the data-path measurement uses it). Every sample starts on an LIO clean
    of this baseline's objects, and whatever a sample leaves (cut short, or
    failed) is removed before this returns or raises."""
    creates, deletes, calls, estimated, extra = [], [], [], 0, None
    n_create, n_delete = len(create_commands("x", "x", "x", "x")), len(delete_commands("x", "x"))
    leftovers = 0
    for i in range(samples):
        name = f"{SO_PREFIX}{os.getpid()}-{i}"
        iqn = f"{prefix}{name}"
        secret = throwaway_secret()
        leftovers += clean(prefix)
        try:
            c = _until(create_commands(name, iqn, str(files[i % len(files)]), "127.0.0.1",
                                       initiator, secret), deadline)
            if between and i == 0 and len(c) == n_create:
                extra = between(iqn, secret)
            d = _until(delete_commands(name, iqn), deadline) if len(c) == n_create else []
        finally:
            clean(prefix)
        calls.extend(c + d)
        per_call = statistics.fmean(c + d)
        if len(c) < n_create or len(d) < n_delete:
            estimated += 1
            creates.append(per_call * n_create)
            deletes.append(per_call * n_delete)
        else:
            creates.append(sum(c))
            deletes.append(sum(d))
        log(f"  targetcli sample {i}: {len(c)}+{len(d)} calls, {per_call:.1f}s per call")
        if time.monotonic() > deadline:
            break
    return {"create": summary(creates), "delete": summary(deletes), "per_call": summary(calls),
            "calls_per_create": n_create, "calls_per_delete": n_delete, "estimated": estimated,
            "leftovers_removed": leftovers, "between": extra}
