"""The API server's own loop: it ticks once a second (uvicorn's ticks ten
times, which kept an idle daemon busy), refreshes the Date header on each
tick, and a shutdown from another thread ends it without waiting a tick."""
from __future__ import annotations

import http.client
import threading
import time

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.secret import Secret
from tests.support.wait import wait_for


def test_an_idle_server_ticks_once_a_second_and_stops_on_request(services):
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret("t" * 32))))
    ticks: list[int] = []
    real = srv._server.on_tick

    async def counting(counter: int) -> bool:
        ticks.append(counter)
        return await real(counter)
    srv._server.on_tick = counting              # type: ignore[method-assign]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: srv.responsive(1.0), 10, 0.05)
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().getheader("Date")     # refreshed by the ticks
        conn.close()
        time.sleep(2.5)
        # uvicorn's own loop would have ticked about 25 times by now.
        assert 2 <= len(ticks) <= 5, ticks
        assert all(t % 10 == 0 for t in ticks)  # every tick refreshes the Date header
    finally:
        srv.shutdown(timeout=30)
    thread.join(30)
    assert not thread.is_alive()
