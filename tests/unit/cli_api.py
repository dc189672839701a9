"""The real API app on a loopback port for CLI tests, remembering the
microversion header of every request it serves."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.cli import main as cli_main
from iscsiattach.secret import Secret


@contextlib.contextmanager
def serving(services, monkeypatch, token: str, initiator: str) -> Iterator[list[str]]:
    """The CLI's URL and token point at it; ``local_initiator`` is ``initiator``
    (a bare `attachment-update <id>` takes this host's, as in the devref).
    Yields the list the microversions are appended to."""
    versions: list[str] = []
    app = build_app(services, Auth("token", Secret(token)))

    async def recording(scope, receive, send):
        if scope["type"] == "http":
            versions.append(dict(scope["headers"]).get(b"openstack-api-version", b"").decode())
        await app(scope, receive, send)
    srv = make_server("127.0.0.1", 0, recording)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    monkeypatch.setenv("ISCSIATTACH_URL", f"http://127.0.0.1:{srv.server_port}/v3")
    monkeypatch.setenv("ISCSIATTACH_TOKEN", token)
    monkeypatch.setattr(cli_main, "local_initiator", lambda: initiator)
    try:
        yield versions
    finally:
        srv.shutdown()
        srv.server_close()
