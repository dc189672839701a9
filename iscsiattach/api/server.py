"""The API's HTTP server: uvicorn (asyncio, h11) on TCP, TLS or a Unix socket.

An idle connection costs a file descriptor and a few KiB, never a thread;
TLS handshakes run in the event loop; every limit is in ``Limits``. The
operations themselves block (SQLite, configfs, locks), so the application
runs them in a bounded pool of worker threads (``api.app``).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from iscsiattach.api.connections import (
    ConnectionLimiter,
    GuardedH11Protocol,
    HandshakeSlots,
    TlsFront,
)
from iscsiattach.api.limits import Limits
from iscsiattach.api.listen import UnixListen, parse_listen, prepare_unix_socket
from iscsiattach.exception import ListenFailed


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def bind(listen: str, port: int) -> socket.socket:
    """A listening socket for ``listen`` (an address, or unix:PATH)."""
    where = parse_listen(listen)
    if isinstance(where, UnixListen):
        prepare_unix_socket(where.path)    # removes a stale socket, nothing else
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)           # the socket is 0600: root only
        try:
            sock.bind(where.path)
        finally:
            os.umask(old)
    else:
        family = socket.AF_INET6 if where.is_ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((where.host, port))
    # A burst of clients (hosts racing for a volume) must queue, not be reset.
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock


ACCEPT_BATCH = 16
TICKS_PER_SECOND = 10       # uvicorn's on_tick() refreshes its Date header every tenth


class _Uvicorn(uvicorn.Server):
    """uvicorn's server on our socket, with our protocols and no signal
    handlers of its own (the daemon owns SIGTERM)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket,
                 tls: ssl.SSLContext | None, limits: Limits) -> None:
        super().__init__(config)
        self.sock, self.tls, self.limits = sock, tls, limits
        self.limiter = ConnectionLimiter(limits.max_connections)
        self.handshakes = HandshakeSlots(limits.max_tls_handshakes)
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        """uvicorn's loop, ticking once a second instead of ten times: an
        idle daemon woke ten times a second for it (measured: 1.7 % of a
        CPU in the test VM). Each tick refreshes the Date header, as
        uvicorn's tenth tick does; request_exit() wakes it at once."""
        self._loop, self._exit = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + TICKS_PER_SECOND) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    def request_exit(self) -> None:
        """Stop serving (from any thread): finish what is in progress."""
        self.should_exit = True
        loop, event = self._loop, self._exit
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):     # the loop is already closed
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def _http(self) -> GuardedH11Protocol:
        return GuardedH11Protocol(config=self.config, server_state=self.server_state,
                                  app_state=self.lifespan.state, limiter=self.limiter,
                                  header_timeout=self.limits.header_timeout)

    def _protocol(self) -> asyncio.Protocol:
        if self.tls is None:
            return self._http()
        return TlsFront(self.tls, self.limits.tls_handshake_timeout, self.limiter,
                        self.handshakes, self._http)

    async def startup(self, sockets: Any = None) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()
        # asyncio accepts up to ``backlog`` connections in one go, before any
        # protocol (and so the cap) sees them: 1,500 waiting clients would
        # fill the FD table at once. A small batch lets the cap act between
        # batches; the kernel's queue stays long (listen again below).
        server = await loop.create_server(self._protocol, sock=self.sock,
                                          backlog=ACCEPT_BATCH)
        self.sock.listen(socket.SOMAXCONN)
        self.servers = [server]
        self.started = True


class ApiServer:
    """Bound at construction (so the port is known); ``serve_forever`` runs
    the event loop in the calling thread until ``shutdown``."""

    def __init__(self, listen: str, port: int, app: Any, cert: str | None = None,
                 key: str | None = None, limits: Limits | None = None) -> None:
        self.limits = (limits or Limits()).fitted_to_fd_limit()
        tls = tls_context(cert, key) if cert else None   # a bad file fails before bind
        try:
            self.socket = bind(listen, port)
        except OSError as exc:      # only this says "cannot listen"; see cmd/daemon.py
            where = listen if listen.startswith("unix:") else f"{listen} port {port}"
            raise ListenFailed(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        self.server_address = self.socket.getsockname()
        self.server_port = self.server_address[1] if isinstance(self.server_address, tuple) else 0
        config = uvicorn.Config(
            app, interface="asgi3", lifespan="off", log_config=None, access_log=False,
            proxy_headers=False, server_header=False, http="h11", ws="none", loop="asyncio",
            h11_max_incomplete_event_size=self.limits.max_header_bytes,
            timeout_keep_alive=int(max(1, self.limits.keepalive_timeout)),
            timeout_graceful_shutdown=5)
        config.load()
        self._server = _Uvicorn(config, self.socket, tls, self.limits)
        self._done = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def limiter(self) -> ConnectionLimiter:
        return self._server.limiter

    def serve_forever(self, poll_interval: float | None = None) -> None:
        del poll_interval                   # the old server's argument; uvicorn ticks itself
        try:
            asyncio.run(self._run())
        finally:
            self._done.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._server.serve()

    def responsive(self, timeout: float) -> bool:
        """Whether the event loop that serves the API runs callbacks: the
        watchdog's check (a thread that merely runs proves nothing)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout)
            return True
        except Exception:              # noqa: BLE001 - timeout, closed loop: not serving
            return False

    def shutdown(self, timeout: float = 30) -> None:
        """Stop accepting, finish the requests in progress, return when done."""
        self._server.request_exit()
        self._done.wait(timeout)

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


def make_server(listen: str, port: int, app: Any, cert: str | None = None,
                key: str | None = None, limits: Limits | None = None) -> ApiServer:
    return ApiServer(listen, port, app, cert, key, limits)
