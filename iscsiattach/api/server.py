"""A threaded WSGI server on TCP (optionally TLS) or a Unix socket."""
from __future__ import annotations

import os
import socket
import socketserver
import ssl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


class _QuietHandler(WSGIRequestHandler):
    # Buffered: a reply leaves in one send, not one per header line, so a
    # crash never hands a client a status line without its headers and body.
    wbufsize = -1

    # The application logs one line per request itself (with its request id).
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def address_string(self) -> str:
        return self.client_address[0] if self.client_address else "unix"


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of clients (hosts racing
    # for a volume) overflowed it and got their connections reset.
    request_queue_size = socket.SOMAXCONN


class ThreadingWSGIServer6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class UnixWSGIServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer, WSGIServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN

    def server_bind(self) -> None:
        path = self.server_address
        if os.path.exists(path):
            os.unlink(path)             # a stale socket from an earlier run
        old = os.umask(0o177)           # the socket is 0600: root only
        try:
            socketserver.UnixStreamServer.server_bind(self)
        finally:
            os.umask(old)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


def make_server(listen: str, port: int, app, cert: str | None = None,
                key: str | None = None) -> WSGIServer:
    if listen.startswith("unix:"):
        server = UnixWSGIServer(listen[5:], _QuietHandler)
    else:
        host = listen.strip("[]")
        cls = ThreadingWSGIServer6 if ":" in host else ThreadingWSGIServer
        server = cls((host, port), _QuietHandler)
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert, key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.set_app(app)
    return server
