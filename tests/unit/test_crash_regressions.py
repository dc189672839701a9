"""Crash-consistency regressions found by tests/functional/test_crash.py and
tools/crash-suite, kept here in a fast form: a child process is really killed
(SIGKILL at a fault point), then the reconciler repairs what it left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from iscsiattach import failpoints
from iscsiattach.attachments.wiring import wire_services
from iscsiattach.model import Portal
from iscsiattach.targets.fake import FakeBackend
from iscsiattach.volumes.file import FileBackend

PREFIX = "iqn.2010-10.org.iscsiattach.unit:"


def _services(tmp_path):
    return wire_services(str(tmp_path / "state"), FakeBackend(prefix=PREFIX),
                         FileBackend(str(tmp_path / "volumes")), (Portal("127.0.0.1"),))


def _killed_at(point: str, tmp_path, code: str) -> None:
    """Run ``code`` (with ``svc`` built over tmp_path) in a child armed at ``point``."""
    prog = textwrap.dedent(f"""
        from tests.unit.test_crash_regressions import _services
        from pathlib import Path
        svc = _services(Path({str(tmp_path)!r}))
    """) + textwrap.dedent(code)
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                         env={**os.environ, failpoints.ENV: point}, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert f"{failpoints.MARK} {point} " in res.stderr


def test_volume_create_killed_before_its_file_is_linked_leaves_no_temporary_file(tmp_path):
    """Found by the crash tests: a kill between the temporary file and its
    link left a full-size sparse .tmp-*.img in the volume directory forever."""
    _killed_at("file_backend.after_temp_file", tmp_path, "svc.volume_service.create(1, 'cut')")
    volumes = tmp_path / "volumes"
    assert [n for n in os.listdir(volumes) if n.startswith(".tmp-")], "no leftover to clean"
    svc = _services(tmp_path)
    other = volumes / ".tmp-volume-00000000-0000-4000-8000-000000000000-inflight.img"
    other.touch()               # another volume's create in flight: not ours to remove
    report = svc.reconciler.run()
    assert report.interrupted_resolved == 1
    assert svc.store.volumes() == []
    assert sorted(os.listdir(volumes)) == [other.name]


def test_volume_delete_removes_temporary_files_of_its_own_volume_only(tmp_path):
    svc = _services(tmp_path)
    vol = svc.volume_service.create(1, "kept")
    volumes = tmp_path / "volumes"
    mine = volumes / f".tmp-volume-{vol.id}-abc123.img"
    mine.touch()
    other = volumes / ".tmp-volume-00000000-0000-4000-8000-000000000000-abc123.img"
    other.touch()
    svc.volume_service.delete(vol.id)
    assert sorted(os.listdir(volumes)) == [other.name]


def test_a_reply_leaves_in_one_send(monkeypatch):
    """Found by tools/crash-suite: the old WSGI server wrote the status line, Date,
    Server and the other headers in separate sends; a kill between them left a
    client "200" with no Content-Length and an empty body, not a lost reply."""
    import socket
    import threading
    import urllib.request

    from iscsiattach.api.server import make_server

    sent: list[bytes] = []
    real_send, real_sendall = socket.socket.send, socket.socket.sendall

    def send(self, data, *args):
        sent.append(bytes(data))
        return real_send(self, data, *args)

    def sendall(self, data, *args):
        sent.append(bytes(data))
        return real_sendall(self, data, *args)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"Content-Type", b"application/json"), (b"Content-Length", b"11")]})
        await send({"type": "http.response.body", "body": b'{"a": true}'})
    server = make_server("127.0.0.1", 0, app, None, None)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(socket.socket, "send", send)
        monkeypatch.setattr(socket.socket, "sendall", sendall)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:
            assert resp.read() == b'{"a": true}'
    finally:
        server.shutdown()
        server.server_close()
    # A shutdown from another thread wakes the event loop through its
    # self-pipe: a send of one NUL byte, not a reply.
    replies = [s for s in sent if s != b"\0"
               and (s.startswith(b"HTTP/") or not s.startswith(b"GET "))]
    assert len(replies) == 1, replies
    assert b"content-length: 11\r\n" in replies[0].lower() and replies[0].endswith(b'{"a": true}')


def test_a_burst_of_50_clients_is_served_not_reset():
    """Found by test_concurrency_daemon (50 hosts racing for one volume): the
    listen backlog was socketserver's 5, and a burst got connections reset."""
    import threading
    import urllib.error
    import urllib.request

    from iscsiattach.api.server import make_server

    guard = threading.Lock()

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        with guard:             # one at a time, as under one volume's lock
            pass
        await send({"type": "http.response.start", "status": 409, "headers": [
            (b"Content-Type", b"application/json"), (b"Content-Length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})
    server = make_server("127.0.0.1", 0, app, None, None)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[str] = []
    start = threading.Barrier(50)

    def client() -> None:
        start.wait()
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x" * 300), timeout=60)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                errors.append(f"HTTP {exc.code}")
        except OSError as exc:
            errors.append(repr(exc))
    try:
        for _ in range(3):
            threads = [threading.Thread(target=client) for _ in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []
