"""iscsiattachd as a real process over real LIO, driven over its REST API."""
from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchlib.common import PREFIX_OURS, summary, timed
from tests.support import daemon as support

PORT = 18790
URL = f"http://127.0.0.1:{PORT}/v3"
RECONCILE_RE = re.compile(r"reconcile: (\d+) volumes, .* (\d+) compared in full, "
                          r"([0-9.]+)s \(([0-9.]+)s CPU\)$")


class Daemon(support.Daemon):
    """iscsiattachd with the bench's prefix and the file backend, logging at
    INFO (no secrets by design) to ``logfile``."""

    def __init__(self, state: Path, volumes: Path, logfile: Path, interval: int = 3600,
                 extra: str = "") -> None:
        config = support.Config(state, PORT, support.file_backend(volumes), prefix=PREFIX_OURS,
                                interval=interval, extra=extra)
        super().__init__(config, log_path=logfile, config_path=state.parent / "bench.conf")

    def start(self, timeout: float = 3600) -> float:   # type: ignore[override]
        """Start; seconds until it answers HTTP (it listens only after the
        first reconcile has restored every export), polled finely."""
        return super().start(timeout=timeout, interval=0.05)

    def stop(self, timeout: float = 120) -> None:
        super().stop(timeout)

    def reconciles(self) -> list[dict[str, float]]:
        """Every reconcile run the log holds, oldest first."""
        return [{"volumes": int(m.group(1)), "fully_compared": int(m.group(2)),
                 "seconds": float(m.group(3)), "cpu_seconds": float(m.group(4))}
                for m in map(RECONCILE_RE.search, self.log_path.read_text().splitlines()) if m]

    def last_reconcile(self) -> dict[str, float]:
        runs = self.reconciles()
        return runs[-1] if runs else {}


def prepare_state(prepop: Path, state: Path) -> dict[str, Any]:
    """A private copy of a state directory made by benchlib.populate."""
    if state.exists():
        shutil.rmtree(state)
    shutil.copytree(prepop, state)
    return json.loads((prepop.parent / f"{prepop.name}.json").read_text())


def call(method: str, path: str, body: Any = None, token: str | None = None):
    req = urllib.request.Request(URL + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("OpenStack-API-Version", "volume 3.54")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def connector(initiator: str) -> dict[str, Any]:
    return {"initiator": initiator, "ip": "127.0.0.1", "host": "bench", "platform": "x86_64",
            "os_type": "linux2", "multipath": False}


def attach(token: str, volume_id: str, initiator: str) -> dict[str, Any]:
    status, body = call("POST", "/attachments", {"attachment": {
        "volume_uuid": volume_id, "instance_uuid": str(uuid.uuid4()),
        "connector": connector(initiator)}}, token)
    if status != 200:
        raise RuntimeError(f"attachment create on {volume_id}: HTTP {status}")
    return body["attachment"]


def detach(token: str, attachment_id: str) -> None:
    status, _ = call("DELETE", f"/attachments/{attachment_id}", token=token)
    if status != 200:
        raise RuntimeError(f"attachment delete {attachment_id}: HTTP {status}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0     # utime+stime, USER_HZ


def control_plane(token: str, volumes: list[str], samples: int,
                  pid: int | None = None) -> dict[str, Any]:
    """Attachment create-with-connector and delete, one at a time; with the
    daemon's pid, also its CPU seconds per operation (not inflated by
    waiting for a shared CPU, unlike wall time)."""
    creates, deletes = [], []
    cpu0 = cpu_seconds(pid) if pid else None
    for i in range(samples):
        vid = volumes[i % len(volumes)]
        dt, att = timed(attach, token, vid, f"iqn.1994-05.com.example:bench-cp-{i}")
        creates.append(dt)
        deletes.append(timed(detach, token, att["id"])[0])
    out = {"create": summary(creates), "delete": summary(deletes),
           "create_raw": creates, "delete_raw": deletes}
    if pid:
        out["cpu_per_op_ms"] = round(1e3 * (cpu_seconds(pid) - cpu0) / (2 * samples), 1)
    return out


def concurrency(token: str, volumes: list[str], clients: int, cycles: int) -> dict[str, Any]:
    """``clients`` threads, each creating and deleting attachments on its
    own volume ``cycles`` times; ops/s over the wall time, per-op p95."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for c in range(cycles):
            try:
                dt, att = timed(attach, token, volumes[n], f"iqn.1994-05.com.example:cc-{n}-{c}")
                dd, _ = timed(detach, token, att["id"])
                with lock:
                    lat.extend((dt, dd))
            except Exception as exc:   # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(exc))
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "ops": len(lat), "wall_s": round(wall, 2),
            "ops_per_s": round(len(lat) / wall, 3), "latency": summary(lat),
            "errors": errors[:5], "error_count": len(errors)}


def footprint(pid: int, window: float) -> dict[str, Any]:
    """RSS now, and CPU seconds used over ``window`` seconds of idling."""
    def cpu() -> float:
        return cpu_seconds(pid)
    rss_kib = next(int(line.split()[1]) for line in
                   Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    c0, t0 = cpu(), time.perf_counter()
    time.sleep(window)
    used, wall = cpu() - c0, time.perf_counter() - t0
    return {"rss_mib": round(rss_kib / 1024, 1), "idle_window_s": round(wall, 1),
            "idle_cpu_s": round(used, 2), "idle_cpu_pct": round(100 * used / wall, 2)}
