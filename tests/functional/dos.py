"""Denial-of-service attacks on the daemon's HTTPS API, and what they cost it.

One library for the quick form (tests/functional/test_dos.py, in CI) and the
full form (tools/dos-suite). Each scenario, against the real daemon:

1. an authenticated client (a separate process: ``GET /v3/volumes`` with the
   token, ``PROBE_INTERVAL`` apart, one thread opening a fresh TLS
   connection per request, one keeping its connection alive) measures the
   unloaded baseline;
2. the attack starts (asyncio, raw sockets and ssl, in this process); once
   every attack connection is up, the same client measures again while the
   attack goes on; the daemon's RSS and open file descriptors are sampled
   from /proc meanwhile;
3. the attackers leave (every socket closed at once): the daemon's FD count
   must come back to its baseline + FD_SLACK within FD_WITHIN_S;
4. every line the daemon wrote meanwhile is checked (format, no control
   character) and the lines the attack caused are counted.

Persistent attackers come back: a connection the daemon closes is opened
again RECONNECT_S later, as a determined attacker would, so that closing
idle connections once is not enough. Attack requests use ATTACK_PATH, never
the authenticated client's path, so that log lines can be attributed.

The goals (GOALS) are judged per scenario; ``run`` returns a JSON-able dict.
"""
from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import re
import resource
import socket
import ssl
import statistics
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- the goals ---------------------------------------------------------------
RATIO_MAX = 3.0             # loaded p50 / unloaded p50 of authenticated requests
RSS_MAX_MIB = 64            # growth of the daemon's VmRSS during an attack
FD_SLACK = 50               # FDs over the baseline allowed once attackers left ...
FD_WITHIN_S = 10.0          # ... after this long
# Log lines per second of attack caused by the attack's traffic (refused or
# unauthenticated requests, idle and cut-off connections). journald's default
# budget is 10,000 lines per 30 s per service (RateLimitBurst): a daemon that
# writes one line per refused request lets one attacker fill it, and the
# lines dropped then are the daemon's own. 20/s is 6% of that budget, and
# above what a summary ("N requests refused in the last second") or sampled
# logging ever needs, yet two orders of magnitude below what one line per
# refused request gives under the bad-token burst.
LOG_RATE_MAX = 20.0

LEGIT_PATH = "/v3/volumes"
API_VERSION = "volume 3.54"
ATTACK_PATH = "/v3/0bad0bad0bad/volumes"     # a project id: routed, then refused
RECONNECT_S = 1.0
SAMPLE_S = 0.2
ATTACKER_NOFILE = 16384

# One line as iscsiattachd's setup_logging writes it:
# "LEVEL logger [request-id] message", printable, one per record.
LOG_LINE = re.compile(
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) [A-Za-z_][\w.]* "
    r"\[(-|req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\] \S.*")
# C0 (tab, CR, ESC...), DEL, C1 (NEL...) and the Unicode line/paragraph
# separators: each can end, hide or recolour a line in a viewer.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
FORGED_ID = "req-00000000-0000-0000-0000-000000000000"
FORGED_PREFIX = f"INFO iscsiattach.api.wsgi [{FORGED_ID}]"
LEGIT_LINE = re.compile(r"GET /v3/volumes(?![\w/-])")


@dataclass(frozen=True)
class Scale:
    name: str
    baseline_s: float           # unloaded measurement before each attack
    probe_s: float              # loaded measurement, once the attack is up
    ramp_max_s: float           # longest wait for every attack connection
    recovery_s: float           # how long FDs are watched after the attack
    probe_interval: float       # between two authenticated requests, per kind
    probe_timeout: float        # socket timeout of one authenticated request
    idle_tls: int = 1
    idle_tcp: int = 1500
    trickle: int = 100
    trickle_interval: float = 1.0
    big: int = 50
    big_bytes: int = 1 << 20
    healthz: int = 300
    healthz_pause: float = 1.0
    burst: int = 10_000
    burst_conns: int = 50
    burst_max_s: float = 600.0
    # The latency ratio is a timing: the quick form records it and its
    # goal's verdict but does not fail on it (CI shares a TCG machine whose
    # load moves a 10 s window's p50); tools/dos-suite judges it.
    judge_latency: bool = True


FULL = Scale("full", baseline_s=15, probe_s=30, ramp_max_s=60, recovery_s=30,
             probe_interval=0.5, probe_timeout=10)
# The quick form (CI, TCG): shorter windows, and a burst of 2,000 bad tokens
# instead of 10,000 (the only count TCG time forces down: today's server
# answers a few dozen TLS requests per second under TCG).
QUICK = Scale("quick", baseline_s=6, probe_s=10, ramp_max_s=30, recovery_s=FD_WITHIN_S,
              probe_interval=0.5, probe_timeout=5, burst=2_000, burst_max_s=60,
              judge_latency=False)
LATENCY_GOALS = ("p50_ratio",)


@dataclass
class Target:
    """The daemon under attack."""
    host: str
    port: int
    cafile: str
    token: str
    log_path: str
    pid_of: Callable[[], int | None]     # the daemon's pid, None if it is gone
    restart: Callable[[], None] | None = None

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


DAEMON_NOFILE = 1024
VOLUMES = 5                 # what GET /v3/volumes lists


def start_daemon(root: Path, command: list[str] | None = None,
                 env: dict[str, str] | None = None):
    """The real iscsiattachd through the functional tests' harness: HTTPS
    with a self-signed certificate made now, token auth (the default), the
    production log level, RLIMIT_NOFILE soft limit DAEMON_NOFILE; VOLUMES
    volumes made. ``command``/``env``: another daemon start (the server
    comparison). (daemon, Target)."""
    from tests.functional.daemon import PORT, Daemon, make_tls_cert
    cert, key = make_tls_cert(root / "tls")
    daemon = Daemon(root / "state", root / "volumes", tls=(cert, key), debug=False,
                    nofile=DAEMON_NOFILE, command=command, env=env)
    daemon.start()

    def pid_of() -> int | None:
        return daemon.proc.pid if daemon.proc and daemon.proc.poll() is None else None

    def restart() -> None:
        daemon.stop()
        daemon.start()
    target = Target("127.0.0.1", PORT, str(cert), daemon.token, str(daemon.log_path),
                    pid_of, restart)
    for n in range(VOLUMES):
        status, _ = api(target, "POST", "/v3/volumes", {"volume": {"size": 1, "name": f"dos-{n}"}})
        assert status == 202, status
    return daemon, target


def api(target: Target, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection(target.host, target.port, timeout=60,
                                       context=target.client_context())
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"X-Auth-Token": target.token, "OpenStack-API-Version": API_VERSION,
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def attacker_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def trace(msg: str) -> None:
    """A progress line in $ISCSIATTACH_RESULTS/dos-trace.log (shared back
    live from the VM: a long run can be followed from outside)."""
    folder = os.environ.get("ISCSIATTACH_RESULTS")
    if folder:
        with open(Path(folder) / "dos-trace.log", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")


def raise_own_nofile(want: int = ATTACKER_NOFILE) -> int:
    """The attacker needs thousands of FDs: raise this process's soft limit
    (and the hard one where allowed, as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the daemon seen from /proc ------------------------------------------------

def proc_sample(pid: int | None) -> tuple[int, int] | None:
    """(VmRSS in KiB, open FDs) of ``pid``, None if it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


def fd_kinds(pid: int | None) -> dict[str, int]:
    """What ``pid``'s open FDs are: socket, pipe, anon_inode:..., or file."""
    kinds: Counter = Counter()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            kinds[link.split(":", 1)[0] if not link.startswith("/") else "file"] += 1
    except OSError:
        pass
    return dict(kinds)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time ``pid`` has used, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, TypeError):
        return None


class Watch:
    """Samples the daemon's RSS and FDs every SAMPLE_S in the event loop."""

    def __init__(self, target: Target) -> None:
        self.target, self.samples = target, []
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            s = proc_sample(self.target.pid_of())
            if s is not None:
                self.samples.append((time.monotonic(), *s))
            await asyncio.sleep(SAMPLE_S)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# -- the authenticated client (a separate process) ------------------------------

def _get(target: Target, conn: http.client.HTTPSConnection, path: str = LEGIT_PATH,
         token: str | None = None) -> tuple[int, bytes, str | None]:
    conn.request("GET", path, headers={
        "X-Auth-Token": token or target.token, "OpenStack-API-Version": API_VERSION,
        "Accept": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, resp.getheader("x-openstack-request-id")


def _probe_loop(target: Target, kind: str, interval: float, timeout: float,
                done: Callable[[], bool], samples: list) -> None:
    ctx = target.client_context()
    conn = None
    next_at = time.monotonic()
    while not done():
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.05))
            continue
        next_at = now + interval
        new = conn is None or conn.sock is None
        if conn is None:
            conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout,
                                               context=ctx)
        t0 = time.monotonic()
        sample: dict[str, Any] = {"t": t0, "new": new}
        try:
            status, body, rid = _get(target, conn)
            sample.update(s=time.monotonic() - t0, status=status, rid=rid,
                          ok=status == 200 and b'"volumes"' in body)
        except (OSError, http.client.HTTPException) as exc:
            sample.update(s=time.monotonic() - t0, ok=False, error=type(exc).__name__)
            conn.close()
            conn = None
        samples.append(sample)
        if kind == "fresh" and conn is not None:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def _probe_phase(target: Target, interval: float, timeout: float,
                 done: Callable[[], bool]) -> dict[str, list]:
    out: dict[str, list] = {"fresh": [], "keepalive": []}
    threads = [threading.Thread(target=_probe_loop, args=(target, kind, interval, timeout,
                                                          done, out[kind]))
               for kind in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _prober_main(target: Target, scale: Scale, baseline_done, go, stop, out: str) -> None:
    """The authenticated client's process: the baseline, then the loaded
    measurement between ``go`` and ``stop``; JSON into ``out``."""
    try:
        end = time.monotonic() + scale.baseline_s
        res = {"baseline": _probe_phase(target, scale.probe_interval, scale.probe_timeout,
                                        lambda: time.monotonic() >= end)}
        baseline_done.set()
        go.wait()
        res["loaded"] = _probe_phase(target, scale.probe_interval, scale.probe_timeout,
                                     stop.is_set)
    except BaseException:       # noqa: BLE001 - the parent reports it
        res = {"error": traceback.format_exc()}
        baseline_done.set()
    Path(out).write_text(json.dumps(res))


def summarize_probe(samples: list[dict]) -> dict[str, Any]:
    """n, ok, p50 (a failed request counts as infinitely slow), new connections."""
    lat = sorted(s["s"] if s["ok"] else math.inf for s in samples)
    return {"n": len(samples), "ok": sum(s["ok"] for s in samples),
            "p50": statistics.median(lat) if lat else None,
            "new_connections": sum(s["new"] for s in samples),
            "errors": dict(Counter(s.get("error") or s.get("status") for s in samples
                                   if not s["ok"]))}


# -- HTTP over asyncio streams -------------------------------------------------

async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, the server will close) of one response; its body is read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    conn = headers.get(b"connection", b"")
    close = conn == b"close" or (version == b"HTTP/1.0" and conn != b"keep-alive")
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        close = True
    return int(status), close


async def _until_eof(reader: asyncio.StreamReader, stats: Stats) -> None:
    first = True
    while True:
        data = await reader.read(65536)
        if not data:
            return
        if first and data.startswith(b"HTTP/"):
            stats.statuses[data.split(b" ", 2)[1].decode(errors="replace")] += 1
        first = False


# -- the attacks ----------------------------------------------------------------

@dataclass
class Stats:
    slots: int
    connected: set = field(default_factory=set)     # slots connected at least once
    open_now: int = 0
    peak_open: int = 0
    connects: int = 0
    connect_failures: Counter = field(default_factory=Counter)
    server_closes: int = 0
    errors: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    requests: int = 0
    bytes_sent: int = 0
    full_sends: int = 0             # big headers: the whole payload went out
    stuck_tasks: int = 0

    def json(self) -> dict[str, Any]:
        d = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in vars(self).items()}
        d["connected"] = len(self.connected)
        return d


class Attack:
    """``slots`` concurrent attack clients; ``body(slot, reader, writer)``
    returns when the server closed the connection. A slot comes back
    ``reconnect`` seconds later."""

    def __init__(self, target: Target, slots: int, tls: bool, body,
                 reconnect: float = RECONNECT_S, done: Callable[[], bool] = lambda: False):
        self.target, self.tls, self.body, self.reconnect = target, tls, body, reconnect
        self.stats = Stats(slots)
        self.done = done
        self.ctx = attacker_context() if tls else None
        self.tasks: list[asyncio.Task] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.stopping = False

    def _over(self) -> bool:
        return self.stopping or self.done()

    async def _slot(self, i: int) -> None:
        st = self.stats
        while not self._over():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.target.host, self.target.port, ssl=self.ctx,
                    limit=1 << 20), 30)
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                st.connect_failures[type(exc).__name__] += 1
                await asyncio.sleep(self.reconnect or 0.1)
                continue
            if self.stopping:
                # wait_for can swallow a cancel that raced the connect's
                # completion: this connection must not outlive stop().
                writer.transport.abort()
                return
            st.connects += 1
            st.connected.add(i)
            st.open_now += 1
            st.peak_open = max(st.peak_open, st.open_now)
            self.writers.add(writer)
            try:
                await self.body(i, reader, writer, st)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError, IndexError) as exc:
                st.errors[type(exc).__name__] += 1
            finally:
                st.open_now -= 1
                self.writers.discard(writer)
                writer.transport.abort()
            if self._over():
                break
            st.server_closes += 1
            if self.reconnect:
                await asyncio.sleep(self.reconnect)

    async def start(self) -> None:
        # Open in waves so that the listen backlog is not the first thing hit.
        for i in range(self.stats.slots):
            self.tasks.append(asyncio.ensure_future(self._slot(i)))
            if i % 100 == 99:
                await asyncio.sleep(0.05)

    def up(self) -> bool:
        return len(self.stats.connected) >= self.stats.slots

    async def stop(self) -> None:
        """Every attacker leaves at once: sockets shut down and closed
        (abort: no TLS close_notify exchange keeps a socket open), tasks
        cancelled. A task that does not end within 10 s (seen with asyncio's
        SSL transport aborted during a large write) is left behind, its
        socket already shut down; how many is in stats.stuck_tasks."""
        self.stopping = True
        self._abort_all()
        for t in self.tasks:
            t.cancel()
        _, pending = await asyncio.wait(self.tasks, timeout=10) if self.tasks else ((), ())
        self._abort_all()        # any a cancel-swallowing connect still opened
        self.stats.stuck_tasks = len(pending)
        for t in list(pending)[:3]:
            trace("stuck attack task: " + " | ".join(
                f"{f.f_code.co_name}:{f.f_lineno}" for f in t.get_stack()))

    def _abort_all(self) -> None:
        for w in list(self.writers):
            try:
                w.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
            w.transport.abort()

    async def finished(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def idle_body(i, reader, writer, st) -> None:
    """Connect, send nothing; hold until the server closes."""
    await _until_eof(reader, st)


def trickle_body(interval: float):
    async def body(i, reader, writer, st) -> None:
        """A request whose headers never end, one byte per ``interval``."""
        head = f"GET {ATTACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        stream = itertools.chain(head, itertools.cycle(b"X-Trickle: a\r\n"))
        eof = asyncio.ensure_future(_until_eof(reader, st))
        try:
            await asyncio.wait({eof}, timeout=random.random() * interval)
            for byte in stream:
                if eof.done() or writer.transport.is_closing():
                    return
                writer.write(bytes([byte]))
                st.bytes_sent += 1
                await asyncio.wait({eof}, timeout=interval)
        finally:
            eof.cancel()
    return body


def big_headers_body(size: int):
    head = f"GET {ATTACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    line = b"X-Pad-%05d: " + b"a" * 1000 + b"\r\n"
    pad = b"".join(line % n for n in range((size - len(head)) // len(line % 0) + 1))
    payload = (head + pad)[:size]

    async def body(i, reader, writer, st) -> None:
        """1 MiB of headers (no blank line ending them), then stall."""
        async def send() -> None:
            for k in range(0, len(payload), 65536):
                if writer.transport.is_closing():
                    return
                writer.write(payload[k:k + 65536])
                await writer.drain()
                st.bytes_sent += len(payload[k:k + 65536])
            st.full_sends += 1
        sender = asyncio.ensure_future(send())
        try:
            await _until_eof(reader, st)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    return body


def healthz_body(pause: float):
    req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def body(i, reader, writer, st) -> None:
        """GET /healthz, no token, first within ``pause``, then again as
        soon as each answer arrives, Retry-After ignored (keep-alive where
        the server keeps the connection)."""
        await asyncio.sleep(random.random() * pause)
        while not writer.transport.is_closing():
            writer.write(req)
            st.requests += 1
            status, close = await read_response(reader)
            st.statuses[str(status)] += 1
            if close:
                return
            await asyncio.sleep(pause)
    return body


def burst_body(limit: int, counter: list[int]):
    async def body(i, reader, writer, st) -> None:
        """Bad-token requests back to back until ``limit`` in all."""
        while counter[0] < limit and not writer.transport.is_closing():
            counter[0] += 1
            writer.write((f"GET {ATTACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"X-Auth-Token: bad-{counter[0]:08d}-{'x' * 24}\r\n"
                          f"OpenStack-API-Version: {API_VERSION}\r\n\r\n").encode())
            st.requests += 1
            status, close = await read_response(reader)
            st.statuses[str(status)] += 1
            if close:
                return
    return body


# -- the daemon's log ---------------------------------------------------------------

def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_lines(path: str, start: int) -> list[bytes]:
    """Complete lines written from byte ``start`` on (split on LF only)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    return data[:data.rfind(b"\n") + 1].split(b"\n")[:-1] if b"\n" in data else []


def bad_lines(lines: list[bytes]) -> list[str]:
    """Lines that are not one well-formed record: not UTF-8, a control
    character, another format, or a forged record (FORGED_PREFIX)."""
    bad = []
    for raw in lines:
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            bad.append(f"not UTF-8: {raw[:300]!r}")
            continue
        if CONTROL.search(line):
            bad.append(f"control character: {line[:300]!r}")
        elif not LOG_LINE.fullmatch(line):
            bad.append(f"not the log format: {line[:300]!r}")
        elif line.startswith(FORGED_PREFIX):
            bad.append(f"forged line: {line[:300]!r}")
    return bad


def attack_lines(lines: list[bytes], legit_ids: set[str]) -> int:
    """Lines not about the authenticated client's requests."""
    n = 0
    for raw in lines:
        line = raw.decode(errors="replace")
        m = re.search(r"req-[0-9a-f-]{36}", line)
        if (m and m.group(0) in legit_ids) or LEGIT_LINE.search(line):
            continue
        n += 1
    return n


# -- scenarios ------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    make: Callable[[Target, Scale], Attack]
    burst: bool = False


def _burst_attack(target: Target, scale: Scale) -> Attack:
    counter = [0]
    a = Attack(target, scale.burst_conns, True, burst_body(scale.burst, counter), reconnect=0,
               done=lambda: counter[0] >= scale.burst)
    a.counter = counter
    return a


def names(scale: Scale) -> list[str]:
    """Every scenario, the log-injection probes last (they check the whole log)."""
    return [s.name for s in scenarios(scale)] + ["log-injection"]


def scenarios(scale: Scale) -> list[Scenario]:
    return [
        Scenario(f"idle-tls-{scale.idle_tls}", "one TCP connection to the TLS port, nothing sent",
                 lambda t, s: Attack(t, s.idle_tls, False, idle_body)),
        Scenario(f"idle-tcp-{scale.idle_tcp}",
                 f"{scale.idle_tcp} TCP connections, nothing sent (daemon: 1024 FDs)",
                 lambda t, s: Attack(t, s.idle_tcp, False, idle_body)),
        Scenario(f"trickle-{scale.trickle}",
                 f"{scale.trickle} TLS clients sending header bytes one per "
                 f"{scale.trickle_interval:g} s, never ending them",
                 lambda t, s: Attack(t, s.trickle, True, trickle_body(s.trickle_interval))),
        Scenario(f"big-headers-{scale.big}",
                 f"{scale.big} TLS clients each sending {scale.big_bytes >> 20} MiB of headers, "
                 "then stalling",
                 lambda t, s: Attack(t, s.big, True, big_headers_body(s.big_bytes))),
        Scenario(f"healthz-{scale.healthz}",
                 f"{scale.healthz} TLS clients each sending GET /healthz (no token), "
                 f"starting within {scale.healthz_pause:g} s, again as soon as each "
                 f"answer arrives",
                 lambda t, s: Attack(t, s.healthz, True, healthz_body(s.healthz_pause))),
        Scenario(f"bad-token-{scale.burst}",
                 f"{scale.burst} requests with a bad token, back to back on "
                 f"{scale.burst_conns} TLS connections",
                 _burst_attack, burst=True),
    ]


async def _wait(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(step)
    return True


async def _run_attack(target: Target, scale: Scale, sc: Scenario) -> dict[str, Any]:
    mp = multiprocessing.get_context("fork")
    baseline_done, go, stop = mp.Event(), mp.Event(), mp.Event()
    fd, out = tempfile.mkstemp(prefix="dos-probe-", suffix=".json")
    os.close(fd)
    prober = mp.Process(target=_prober_main, args=(target, scale, baseline_done, go, stop, out),
                        daemon=True)
    prober.start()
    trace(f"{sc.name}: baseline")
    await _wait(baseline_done.is_set, scale.baseline_s + 60)

    base = proc_sample(target.pid_of()) or (0, 0)
    watch = Watch(target)
    watch.start()
    log_start = log_size(target.log_path)
    attack = sc.make(target, scale)
    cpu_start = cpu_seconds(target.pid_of())
    t_start = time.monotonic()
    await attack.start()
    trace(f"{sc.name}: attack started")
    if sc.burst:
        ramp_s = 0.0
        go.set()
        await _wait(lambda: all(t.done() for t in attack.tasks), scale.burst_max_s, 0.2)
    else:
        up = await _wait(attack.up, scale.ramp_max_s)
        ramp_s = time.monotonic() - t_start
        trace(f"{sc.name}: attack up={up} after {ramp_s:.1f} s: {attack.stats.json()}")
        go.set()
        await asyncio.sleep(scale.probe_s if up else 1)
    stop.set()
    trace(f"{sc.name}: stopping the client")
    await _wait(lambda: not prober.is_alive(), scale.probe_timeout * 4 + 30, 0.1)
    trace(f"{sc.name}: attackers leave: {attack.stats.json()}")
    cpu_end = cpu_seconds(target.pid_of())
    await attack.stop()
    t_left = time.monotonic()
    trace(f"{sc.name}: attackers gone")
    attack_s = t_left - t_start

    # Recovery: the FD count must come back within FD_WITHIN_S.
    fd_back_s = None
    fd_series: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        s = proc_sample(target.pid_of())
        if s is not None:
            fd_series.append((round(now - t_left, 2), s[1]))
        if s is not None and fd_back_s is None and s[1] <= base[1] + FD_SLACK:
            fd_back_s = now - t_left
        if now - t_left >= scale.recovery_s or (fd_back_s is not None
                                                 and now - t_left >= 1.0):
            break
        await asyncio.sleep(SAMPLE_S)
    after = proc_sample(target.pid_of())
    kinds_after = fd_kinds(target.pid_of())
    await watch.stop()
    trace(f"{sc.name}: recovery watched, fd back after {fd_back_s} s")

    probe = json.loads(Path(out).read_text() or "{}") if Path(out).exists() else {}
    os.unlink(out)
    if prober.is_alive():
        prober.kill()
    if "error" in probe or "loaded" not in probe:
        raise RuntimeError(f"the authenticated client failed: {probe.get('error', probe)}")

    legit_ids = {s["rid"] for ph in probe.values() for k in ph.values() for s in k
                 if s.get("rid")}
    lines = read_lines(target.log_path, log_start)
    caused = attack_lines(lines, legit_ids)
    rss_max = max((s[1] for s in watch.samples), default=base[0])
    fd_peak = max((s[2] for s in watch.samples), default=base[1])
    stats = attack.stats.json()
    if sc.burst:
        stats["sent"] = attack.counter[0]
    return {
        "baseline": {k: summarize_probe(v) for k, v in probe["baseline"].items()},
        "loaded": {k: summarize_probe(v) for k, v in probe["loaded"].items()},
        "attack_seconds": round(attack_s, 2), "ramp_seconds": round(ramp_s, 2),
        "attack": stats,
        "rss_base_kib": base[0], "rss_max_kib": rss_max, "rss_after_kib": after and after[0],
        "fd_base": base[1], "fd_peak": fd_peak, "fd_after": after and after[1],
        "fd_back_seconds": None if fd_back_s is None else round(fd_back_s, 2),
        "fd_stayed_back": bool(after) and after[1] <= base[1] + FD_SLACK,
        "fd_recovery": fd_series[::5], "fd_kinds_after": kinds_after,
        "daemon_cpu_share": (None if cpu_start is None or cpu_end is None
                             else round((cpu_end - cpu_start) / max(t_left - t_start, 0.1), 2)),
        "log_lines": len(lines), "log_attack_lines": caused,
        "log_attack_per_s": round(caused / max(attack_s, 1.0), 2),
        "log_bad": bad_lines(lines),
    }


def judge(r: dict[str, Any], sc: Scenario | None) -> dict[str, Any]:
    """The goals of one attack scenario: name -> (met, figure)."""
    goals: dict[str, Any] = {}
    loaded, base = r["loaded"], r["baseline"]
    total = sum(v["n"] for v in loaded.values())
    ok = sum(v["ok"] for v in loaded.values())
    goals["auth_all_ok"] = (total > 0 and ok == total, f"{ok}/{total}")
    ratios = {}
    for kind in loaded:
        b, l_ = base[kind]["p50"], loaded[kind]["p50"]
        ratios[kind] = (math.inf if not b or l_ is None or math.isinf(b) or math.isinf(l_)
                        else l_ / b)
    r["ratio"] = {k: (None if math.isinf(v) else round(v, 2)) for k, v in ratios.items()}
    goals["p50_ratio"] = (all(v <= RATIO_MAX for v in ratios.values()),
                          max(ratios.values()))
    delta = (r["rss_max_kib"] - r["rss_base_kib"]) / 1024
    r["rss_delta_mib"] = round(delta, 1)
    goals["rss"] = (delta <= RSS_MAX_MIB, round(delta, 1))
    fb = r["fd_back_seconds"]
    goals["fd_back"] = (fb is not None and fb <= FD_WITHIN_S and r.get("fd_stayed_back", True),
                        f"{r['fd_after']} (base {r['fd_base']})")
    goals["log_format"] = (not r["log_bad"], len(r["log_bad"]))
    goals["log_rate"] = (r["log_attack_per_s"] <= LOG_RATE_MAX, r["log_attack_per_s"])
    goals["alive"] = (r["alive"], r["alive"])
    st = r["attack"]
    # An attack that never reached its strength proves nothing.
    if sc is not None and sc.burst:
        delivered = st["requests"] > 0
    else:
        delivered = st["connected"] >= st["slots"]
        if sc is not None and sc.name.startswith("big-headers"):
            delivered = delivered and st["bytes_sent"] > 0
    goals["attack_delivered"] = (delivered, f"{st['connected']}/{st['slots']} connected")
    return goals


def run(target: Target, name: str, scale: Scale) -> dict[str, Any]:
    """One scenario (or "log-injection"); its measurements, goals, verdict.
    A daemon that died in an earlier scenario is started again first."""
    raise_own_nofile()
    restarted = False
    if target.pid_of() is None and target.restart is not None:
        target.restart()
        restarted = True
    if name == "log-injection":
        r = log_injection(target)
        goals = {k: v for k, v in r.pop("goals").items()}
        what = "log-injection probes (CR, LF, ESC, NEL, LS, NUL; path, query, headers)"
    else:
        sc = next(s for s in scenarios(scale) if s.name == name)
        what = sc.what
        # asyncio warns about every write to a socket the daemon reset.
        quiet = logging.getLogger("asyncio")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        # Not asyncio.run: it would wait for attack tasks stuck in asyncio's
        # SSL transport (Attack.stop); they are dropped with the loop.
        loop = asyncio.new_event_loop()
        try:
            r = loop.run_until_complete(_run_attack(target, scale, sc))
        finally:
            loop.close()
            quiet.setLevel(level)
        r["alive"] = target.pid_of() is not None
        goals = judge(r, sc)
    r.update(scenario=name, what=what, scale=scale.name, restarted_before=restarted)
    trace(f"{name}: done: {goal_report_raw(goals)}")
    return record_verdict(r, goals, scale)


def record_verdict(r: dict[str, Any], goals: dict[str, tuple], scale: Scale) -> dict[str, Any]:
    """The goals into ``r``, and the verdict by this scale's rule: every
    goal met, but for the latency ones where the scale does not judge them."""
    unjudged = () if scale.judge_latency else LATENCY_GOALS
    r["goals"] = {k: {"met": bool(v[0]), "value": _jsonable(v[1]),
                      **({"judged": False} if k in unjudged else {})}
                  for k, v in goals.items()}
    r["failed"] = [k for k, v in goals.items() if not v[0] and k not in unjudged]
    r["verdict"] = "PASS" if not r["failed"] else "FAIL"
    return r


def _jsonable(v):
    if isinstance(v, float):
        return None if math.isinf(v) or math.isnan(v) else round(v, 3)
    return v


# -- log injection ---------------------------------------------------------------------

def _probes() -> list[tuple[str, bytes, bool]]:
    """(name, raw request head, sent with the valid token)."""
    forged = "INFO%20iscsiattach.api.wsgi%20%5B" + FORGED_ID + "%5D%20"
    paths = [
        ("lf", f"/v3/volumes/x%0a{forged}FORGED01".encode()),
        ("crlf", f"/v3/volumes/x%0d%0a{forged}FORGED02".encode()),
        ("cr", f"/v3/volumes/x%0d{forged}FORGED03".encode()),
        ("esc-raw", b"/v3/volumes/x\x1b[31mFORGED04\x1b[0m"),
        ("esc-pct", b"/v3/volumes/x%1b%5b31mFORGED05%1b%5b0m"),
        ("nel", f"/v3/volumes/x%c2%85{forged}FORGED06".encode()),
        ("ls", f"/v3/volumes/x%e2%80%a8{forged}FORGED07".encode()),
        ("nul", b"/v3/volumes/x%00FORGED08"),
        ("cr-raw", b"/v3/volumes/x\rFORGED09"),
        ("query-lf", f"/v3/volumes?x=%0a{forged}FORGED10".encode()),
        ("unrouted-lf", f"/x%0a{forged}FORGED11".encode()),
        ("bell-title", b"/v3/volumes/x%1b%5d0;FORGED12%07"),
        ("bad-utf8", b"/v3/volumes/x%ff%fe%c0%80FORGED13"),
    ]
    out = []
    for name, path in paths:
        for good in (True, False):
            out.append((f"path {name} ({'token' if good else 'bad token'})",
                        b"GET " + path + b" HTTP/1.1\r\n", good))
    out += [
        ("method esc", b"GE\x1b[31mT /v3/volumes HTTP/1.1\r\n", True),
        ("version header esc",
         b"GET /v3/volumes HTTP/1.1\r\nOpenStack-API-Version: volume 3.54\x1b[2JFORGED14\r\n",
         True),
        ("token esc", b"GET /v3/volumes HTTP/1.1\r\nX-Auth-Token: bad\x1b[31mFORGED15\r\n",
         False),
        ("version header lf-pct",
         f"GET /v3/volumes HTTP/1.1\r\nOpenStack-API-Version: volume 3.0%0a{forged}FORGED16\r\n"
         .encode(), True),
    ]
    return out


def _send_probe(target: Target, head: bytes, token: str | None) -> tuple[str, str | None]:
    """(status or error, x-openstack-request-id)."""
    req = head
    if b"X-Auth-Token" not in head:
        req += f"X-Auth-Token: {token}\r\n".encode()
    if b"OpenStack-API-Version" not in head:
        req += f"OpenStack-API-Version: {API_VERSION}\r\n".encode()
    req += b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ctx = target.client_context()
    data = b""
    try:
        with socket.create_connection((target.host, target.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=target.host) as s:
            s.sendall(req)
            data = b""
            while len(data) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, ssl.SSLError) as exc:
        if not data:
            return type(exc).__name__, None
    head_, _, _ = data.partition(b"\r\n\r\n")
    lines = head_.split(b"\r\n")
    status = lines[0].split(b" ")[1].decode() if lines and lines[0].startswith(b"HTTP/") \
        else "no answer"
    rid = None
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"x-openstack-request-id":
            rid = v.strip().decode(errors="replace")
    return status, rid


def log_injection(target: Target) -> dict[str, Any]:
    """Every probe sent once; then every line the daemon wrote since its
    start must be well-formed (bad_lines), and each authenticated probe the
    application answered (it has a request id) must have been logged under
    that id: a daemon that logs nothing would pass the first check alone."""
    start = log_size(target.log_path)
    sent = []
    for name, head, good in _probes():
        status, rid = _send_probe(target, head, target.token if good else "bad-" + "x" * 40)
        sent.append({"probe": name, "status": status, "rid": rid, "token": good})
        time.sleep(0.05)
    time.sleep(1.0)
    window = read_lines(target.log_path, start)
    whole = read_lines(target.log_path, 0)
    text = b"\n".join(window).decode(errors="replace")
    unlogged = [p["probe"] for p in sent if p["token"] and p["rid"] and p["rid"] not in text]
    answered = [p for p in sent if p["token"] and p["rid"]]
    bad = bad_lines(whole)
    alive = target.pid_of() is not None
    return {
        "probes": sent, "log_lines": len(window), "log_bad": bad,
        "log_lines_total": len(whole),
        "goals": {
            "log_format": (not bad, len(bad)),
            "probes_logged": (bool(answered) and not unlogged,
                              f"{len(answered) - len(unlogged)}/{len(answered)}"),
            "alive": (alive, alive),
        },
    }


# -- the table ----------------------------------------------------------------------

def _ms(v) -> str:
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v * 1000:.0f}")


def table(results: list[dict[str, Any]], markdown: bool = False) -> str:
    """scenario, baseline p50, loaded p50, ratio, auth ok/total, RSS delta,
    FD after, log lines/s, verdict; p50s in ms as fresh/keep-alive. As
    aligned text, or as a Markdown table (docs are rendered from the JSON)."""
    rows = _rows(results)
    if markdown:
        lines = ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join([lines[0], "|" + "---|" * len(rows[0])] + lines[1:])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _rows(results: list[dict[str, Any]]) -> list[tuple]:
    head = ("scenario", "base p50 ms f/ka", "loaded p50 ms f/ka", "ratio", "auth ok",
            "RSS +MiB", "FD after (base)", "log/s", "verdict")
    rows: list[tuple] = [head]
    for r in results:
        if "loaded" not in r:
            g = r["goals"]
            rows.append((r["scenario"], "-", "-", "-", g.get("probes_logged", {}).get("value", "-"),
                         "-", "-", "-", _verdict(r)))
            continue
        b, l_ = r["baseline"], r["loaded"]
        ratio = r["goals"]["p50_ratio"]["value"]
        rows.append((
            r["scenario"],
            f"{_ms(b['fresh']['p50'])}/{_ms(b['keepalive']['p50'])}",
            f"{_ms(l_['fresh']['p50'])}/{_ms(l_['keepalive']['p50'])}",
            "inf" if ratio is None else f"{ratio:.1f}",
            r["goals"]["auth_all_ok"]["value"],
            f"{r['rss_delta_mib']:.1f}",
            f"{r['fd_after']} ({r['fd_base']})",
            f"{r['log_attack_per_s']:.1f}",
            _verdict(r)))
    return rows


def _verdict(r: dict[str, Any]) -> str:
    over = [k for k, v in r["goals"].items() if v.get("judged") is False and not v["met"]]
    note = f" ({','.join(over)} over its goal, not judged here)" if over else ""
    return ("PASS" if not r["failed"] else "FAIL: " + ",".join(r["failed"])) + note


def goal_report_raw(goals: dict[str, tuple]) -> str:
    return "; ".join(f"{k}={_jsonable(v[1])}" + ("" if v[0] else " (FAILED)")
                     for k, v in goals.items())


def goal_report(r: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v['value']}" + ("" if v["met"] else " (over its goal, not judged)"
                                            if v.get("judged") is False else " (FAILED)")
                     for k, v in r["goals"].items())
