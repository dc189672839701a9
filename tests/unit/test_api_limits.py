"""The API's limits, each pushed past on a real socket: the refusal by its
status (or the connection closed, for broken HTTP), nothing changed, and
other clients served meanwhile."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import subprocess
import threading
import time

import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.limits import Limits
from iscsiattach.api.logsafe import SafeFormatter
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.secret import Secret

TOKEN = "limits-token-0123456789abcdef"
SMALL = Limits(max_header_bytes=4096, max_header_count=20, max_url_length=512,
               max_body_bytes=2048, max_connections=8, workers=1, max_queued_requests=1,
               header_timeout=1.0, body_timeout=1.0, keepalive_timeout=5.0,
               tls_handshake_timeout=1.0, refused_log_rate=5.0)


@contextlib.contextmanager
def serving(services, limits: Limits = SMALL, cert=None, key=None):
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret(TOKEN)),
                                                limits=limits), cert, key, limits)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError, socket.timeout):
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(path: str, method: str = "GET", body: bytes = b"", token: str | None = TOKEN,
            extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if token:
        head += f"X-Auth-Token: {token}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    return (head + extra + "\r\n").encode() + body


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def fault(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


def volumes_ok(port: int) -> bool:
    return status(exchange(port, request("/v3/volumes"))) == 200


def test_a_head_over_max_header_bytes_is_refused_and_closed(services):
    with serving(services) as srv:
        reply = exchange(srv.server_port, request("/v3/volumes", extra="X-Pad: " + "a" * 8000
                                                  + "\r\n"))
        assert status(reply) == 431
        # Sent in pieces, the head is cut by h11 before it is whole: 400, closed.
        with socket.create_connection(("127.0.0.1", srv.server_port), timeout=10) as s:
            s.sendall(b"GET /v3/volumes HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):
                with contextlib.suppress(OSError):
                    s.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            assert status(read_all(s)) == 400
        assert volumes_ok(srv.server_port)


def test_too_many_header_fields_is_431(services):
    with serving(services) as srv:
        extra = "".join(f"X-H{i}: v\r\n" for i in range(30))
        reply = exchange(srv.server_port, request("/v3/volumes", extra=extra))
        assert status(reply) == 431 and "computeFault" in fault(reply)


def test_a_long_request_target_is_414(services):
    with serving(services) as srv:
        reply = exchange(srv.server_port, request("/v3/volumes?marker=" + "a" * 600))
        assert status(reply) == 414


def test_a_large_declared_body_is_413_before_it_is_sent(services):
    """The server answers from the head alone: the 10 MB never leave."""
    with serving(services) as srv:
        head = request("/v3/volumes", "POST").replace(b"Content-Length: 0",
                                                       b"Content-Length: 10000000")
        reply = exchange(srv.server_port, head)
        assert status(reply) == 413 and "overLimit" in fault(reply)
        assert services.store.volumes() == []


def test_the_token_is_checked_before_the_body(services):
    with serving(services) as srv:
        head = request("/v3/volumes", "POST", token="wrong-token-0123456789").replace(
            b"Content-Length: 0", b"Content-Length: 10000000")
        assert status(exchange(srv.server_port, head)) == 401


def test_a_chunked_body_over_the_limit_is_413(services):
    with serving(services) as srv:
        chunk = b"a" * 1500
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
        head = (f"POST /v3/volumes HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {TOKEN}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        assert status(exchange(srv.server_port, head + body)) == 413


def test_a_body_that_never_arrives_is_408(services):
    with serving(services) as srv:
        head = request("/v3/volumes", "POST").replace(b"Content-Length: 0", b"Content-Length: 50")
        started = time.monotonic()
        reply = exchange(srv.server_port, head + b'{"volume"')
        assert status(reply) == 408
        assert time.monotonic() - started < 5
        assert services.store.volumes() == []


def test_a_trickled_head_is_cut_at_header_timeout(services):
    """One byte every 0.2 s keeps uvicorn's own keep-alive timer from firing;
    the head deadline counts from the connection's start."""
    with serving(services) as srv, \
            socket.create_connection(("127.0.0.1", srv.server_port), timeout=10) as s:
        started = time.monotonic()
        for byte in request("/v3/volumes")[:-4]:        # the head never completes
            if _closed(s) or time.monotonic() - started > 6:
                break
            with contextlib.suppress(OSError):
                s.sendall(bytes([byte]))
            time.sleep(0.2)
        assert _closed(s) and time.monotonic() - started < 3
        assert volumes_ok(srv.server_port)


def _closed(s: socket.socket) -> bool:
    import select
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def test_idle_connections_over_the_cap_evict_the_oldest(services):
    """max_connections = 8: twenty idle clients cannot lock out a new one."""
    with serving(services) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.server_port)) for _ in range(20)]
        try:
            time.sleep(0.3)
            assert volumes_ok(srv.server_port)
            assert srv.limiter.open <= SMALL.max_connections
            assert srv.limiter.evicted >= 12
        finally:
            for s in idle:
                s.close()


def test_an_idle_tls_client_blocks_nobody(services, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with serving(services, cert=str(cert), key=str(key)) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.server_port))
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            with socket.create_connection(("127.0.0.1", srv.server_port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(request("/v3/"))
                reply = read_all(s)
            assert status(reply) == 200
            # Links under TLS say https.
            assert fault(reply)["versions"][0]["links"][1]["href"].startswith("https://")
            # The silent client is dropped at the handshake deadline.
            silent.settimeout(5)
            assert silent.recv(1) == b""
        finally:
            silent.close()


def _tls_files(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def _tls_request(port: int, cafile: str, path: str = "/v3/volumes") -> int:
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(request(path))
        return status(read_all(s))


def test_silent_and_stalled_tls_clients_lock_nobody_out(services, tmp_path):
    """30 silent clients and 10 that stall after one byte of a handshake,
    against max_connections = 8 and max_tls_handshakes = 4: a real client is
    served, and no more handshakes than the cap hold TLS state at once."""
    cert, key = _tls_files(tmp_path)
    limits = Limits(max_connections=8, max_tls_handshakes=4, tls_handshake_timeout=30,
                    header_timeout=30)
    with serving(services, limits, cert, key) as srv:
        silent = [socket.create_connection(("127.0.0.1", srv.server_port)) for _ in range(30)]
        stalled = [socket.create_connection(("127.0.0.1", srv.server_port)) for _ in range(10)]
        try:
            for s in stalled:
                s.sendall(b"\x16")              # the first byte of a ClientHello
            time.sleep(0.5)
            assert srv._server.handshakes.running <= 4
            assert srv.limiter.open <= 8
            assert _tls_request(srv.server_port, cert) == 200
        finally:
            for s in silent + stalled:
                s.close()


def test_busy_workers_give_503_with_retry_after(services, monkeypatch):
    """One worker, one queued: a third operation at once is refused, not queued."""
    gate = threading.Event()
    real = services.volume_service.list_volumes

    def slow_list():
        gate.wait(10)
        return real()
    monkeypatch.setattr(services.volume_service, "list_volumes", slow_list)
    with serving(services) as srv:
        replies: list[bytes] = []
        threads = [threading.Thread(target=lambda: replies.append(
            exchange(srv.server_port, request("/v3/volumes")))) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        third = exchange(srv.server_port, request("/v3/volumes"))
        gate.set()
        for t in threads:
            t.join()
        assert status(third) == 503 and b"retry-after: 1" in third.lower()
        assert sorted(status(r) for r in replies) == [200, 200]


@pytest.mark.parametrize("path,body", [
    ("/v3/volumes", {"volume": {"size": "9" * 5000}}),
    ("/v3/volumes?limit=" + "9" * 400, None),
])
def test_over_long_integers_are_400(services, path, body):
    limits = Limits(max_url_length=8192, max_body_bytes=65536)
    with serving(services, limits) as srv:
        data = json.dumps(body).encode() if body else b""
        reply = exchange(srv.server_port, request(path, "POST" if body else "GET", data))
        assert status(reply) == 400 and "badRequest" in fault(reply)


def test_an_over_long_microversion_is_400_not_500(services):
    with serving(services, Limits()) as srv:
        reply = exchange(srv.server_port, request(
            "/v3/volumes", extra="OpenStack-API-Version: volume 3." + "9" * 5000 + "\r\n"))
        assert status(reply) == 400 and "badRequest" in fault(reply)
        # A long but readable number is a version out of range, as Cinder says.
        reply = exchange(srv.server_port, request(
            "/v3/volumes", extra="OpenStack-API-Version: volume 3." + "9" * 50 + "\r\n"))
        assert status(reply) == 406


def test_log_lines_cannot_be_forged(services, caplog):
    formatter = SafeFormatter("%(levelname)s %(message)s")
    with caplog.at_level(logging.INFO), serving(services) as srv:
        exchange(srv.server_port, request("/v3/volumes%0aERROR%20forged%1b[31m"))
    lines = [formatter.format(r) for r in caplog.records]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines)
    assert any("\\nERROR forged\\x1b[31m" in line for line in lines), lines


def test_refused_requests_log_at_the_rate_limit(services, caplog):
    with caplog.at_level(logging.INFO), serving(services) as srv:
        for _ in range(60):
            exchange(srv.server_port, request("/v3/volumes", token="bad-token-0123456789abc"))
    refused = [r for r in caplog.records if "-> 401" in r.getMessage()]
    # Bucket of 5 plus 5 lines/s over the run's few seconds, never all 60.
    assert 5 <= len(refused) < 40, len(refused)


def test_a_token_holders_refusals_are_all_logged_and_not_paced(services, caplog):
    """Under the refusal log limit and the pacing, a request with the token
    that is refused (404 on an unknown path, 400) still gets its line, at once."""
    limits = Limits(unauthenticated_rate=1.0, refused_log_rate=1.0)
    with caplog.at_level(logging.INFO), serving(services, limits) as srv:
        for _ in range(5):                    # use up the budgets
            exchange(srv.server_port, request("/nowhere", token="bad-token-0123456789abc"))
        started = time.monotonic()
        statuses = [status(exchange(srv.server_port, request(path)))
                    for path in ["/nowhere"] * 10 + ["/v3/volumes?bogus=1"] * 10]
        took = time.monotonic() - started
    assert statuses == [404] * 10 + [400] * 10
    logged = [r.getMessage() for r in caplog.records]
    assert sum("/nowhere -> 404" in m for m in logged) >= 10
    assert sum("-> 400" in m for m in logged) == 10
    assert took < 5.0, took                   # 20 paced answers at 1/s would take 20 s


def test_openapi_document_is_public_and_names_every_operation(services):
    with serving(services) as srv:
        reply = exchange(srv.server_port, request("/openapi.json", token=None))
        doc = fault(reply)
    assert status(reply) == 200 and doc["openapi"].startswith("3.1")
    post = doc["paths"]["/v3/attachments"]["post"]
    assert post["security"] == [{"token": []}]
    assert "volume_uuid" in post["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["attachment"]["properties"]
    assert "/v3/{project}/volumes/{id}" in doc["paths"]


def test_health_before_ready_is_json_503(services):
    with serving(services) as srv:
        reply = exchange(srv.server_port, request("/healthz", token=None))
    assert status(reply) == 503 and fault(reply)["ready"] is False
    assert fault(reply)["auth_strategy"] == "token"


def test_unauthenticated_answers_are_paced_and_the_token_holders_are_not(services):
    """60 bad-token requests at once against unauthenticated_rate = 20: their
    answers spread over about 2 s; a request with the token meanwhile is
    answered at once."""
    limits = Limits(unauthenticated_rate=20.0, refused_log_rate=5.0)
    with serving(services, limits) as srv:
        started = time.monotonic()
        replies: list[bytes] = []
        threads = [threading.Thread(target=lambda: replies.append(exchange(
            srv.server_port, request("/v3/volumes", token="bad-token-0123456789abc"))))
            for _ in range(60)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        assert volumes_ok(srv.server_port)
        authenticated = time.monotonic() - t0
        for t in threads:
            t.join()
        spread = time.monotonic() - started
    assert sorted({status(r) for r in replies}) == [401]
    assert spread >= 1.5, spread              # (60 - 20 burst) / 20 per s = 2 s
    assert authenticated < spread / 2, (authenticated, spread)


def test_the_pacer_refuses_past_its_longest_wait():
    from iscsiattach.api.waiting import Pacer
    pacer = Pacer(rate=10.0, max_wait=1.0)
    delays = [pacer.reserve() for _ in range(40)]
    assert delays[:10] == [0.0] * 10          # the burst
    assert all(d is not None and 0 < d <= 1.0 for d in delays[10:20])
    assert None in delays[20:]                 # over a second of queue: refused
    assert Pacer(rate=0, max_wait=1.0).reserve() == 0.0


def test_a_refusal_is_held_longer_each_time_the_same_connection_asks_again():
    from iscsiattach.api.waiting import RefusalHolds
    holds = RefusalHolds(base=5.0, ceiling=60.0, size=2)
    assert [holds.refused("a") for _ in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert holds.refused("b") == 5.0          # another connection starts afresh
    holds.served("a")                         # its turn came: forgiven
    assert holds.refused("a") == 5.0
    holds.refused("c")                        # a third peer: the oldest is forgotten
    assert holds.refused("b") == 5.0


def test_a_429_is_held_not_sent_at_once(services, monkeypatch):
    """Past the pacing queue the 429 comes after the hold, with Retry-After
    saying it; a client with the token is answered meanwhile."""
    from iscsiattach.api import app as app_module
    monkeypatch.setattr(app_module, "MAX_UNAUTHENTICATED_WAIT", 0.5)
    limits = Limits(unauthenticated_rate=1.0, refused_log_rate=5.0)
    with serving(services, limits) as srv:
        exchange(srv.server_port, request("/v3/volumes", token="bad-token-0123456789abc"))
        replies: list[tuple[float, bytes]] = []

        def ask() -> None:
            t0 = time.monotonic()
            reply = exchange(srv.server_port,
                             request("/v3/volumes", token="bad-token-0123456789abc"))
            replies.append((time.monotonic() - t0, reply))
        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        assert volumes_ok(srv.server_port)
        for t in threads:
            t.join()
    refused = [(s, r) for s, r in replies if status(r) == 429]
    assert refused, [status(r) for _, r in replies]
    for seconds, reply in refused:
        assert seconds >= 0.45, seconds
        assert b"retry-after: 1" in reply.lower()
        assert [f["code"] for f in fault(reply).values()] == [429]


def test_a_hold_ends_when_the_client_leaves():
    """A held 429 must not keep a task waiting for a client that is gone."""
    import asyncio

    from iscsiattach.api.app import wait_unless_gone

    async def run(leave_after: float | None) -> bool:
        messages = [{"type": "http.request", "body": b"x", "more_body": True}]

        async def receive() -> dict:
            if messages:
                return messages.pop()
            if leave_after is None:
                await asyncio.Event().wait()          # never leaves
            await asyncio.sleep(leave_after)
            return {"type": "http.disconnect"}
        # Generous limit: the hold (30 s) is what must not be waited out.
        return await asyncio.wait_for(wait_unless_gone(30.0 if leave_after else 0.2,
                                                       receive), 10)
    assert asyncio.run(run(0.05)) is True         # left: returned long before 30 s
    assert asyncio.run(run(None)) is False        # stayed: the whole hold
