"""Server candidates for tools/dos-suite --compare, started as a daemon would.

    python tools/dos_candidates.py cheroot [DAEMON ARGS...]

runs iscsiattachd as it was before issue 13 (the tree on PYTHONPATH, its
WSGI application and its daemon main) with its wsgiref server replaced by
cheroot's WSGI server (the other candidate issue 13 names): a bounded pool
of ``THREADS`` threads (the new server's ``[api] workers``), the same
32 KiB head limit and 10 s socket timeout as the new server's defaults, TLS
through cheroot's builtin adapter. The old daemon with its own wsgiref
server is started directly (``python -m iscsiattach.cmd.daemon``).
Measurement only: nothing of the product imports this.
"""
from __future__ import annotations

import sys

THREADS = 8
HEAD_BYTES = 32768
TIMEOUT_S = 10


class CherootServer:
    """The old daemon's server interface (serve_forever, shutdown,
    server_close) over cheroot."""

    def __init__(self, listen: str, port: int, app, cert=None, key=None) -> None:
        from cheroot import wsgi
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        self.server = wsgi.Server((listen, port), app, numthreads=THREADS, max=-1,
                                  timeout=TIMEOUT_S, server_name="iscsiattachd")
        self.server.max_request_header_size = HEAD_BYTES
        if cert:
            self.server.ssl_adapter = BuiltinSSLAdapter(cert, key)
        self.server.prepare()                       # binds now, as the old one did

    def serve_forever(self, poll_interval: float | None = None) -> None:
        self.server.serve()

    def shutdown(self) -> None:
        self.server.stop()

    def server_close(self) -> None:
        pass


def main() -> int:
    name, argv = sys.argv[1], sys.argv[2:]
    if name != "cheroot":
        print(f"dos_candidates: unknown server {name!r}", file=sys.stderr)
        return 2
    from iscsiattach.cmd import daemon
    assert hasattr(daemon, "make_server"), "the old daemon is expected on PYTHONPATH"
    daemon.make_server = CherootServer
    return daemon.main(argv)


if __name__ == "__main__":
    sys.exit(main())
