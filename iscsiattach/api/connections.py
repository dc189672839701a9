"""Connections as a bounded resource: a cap with eviction of idle ones, a
deadline for each request head, TLS handshakes that never block accepting.

uvicorn's HTTP/1.1 protocol (h11) parses and limits the head; what it lacks
for a hostile network is added here:

- every connection, from its TCP accept on (TLS handshake included), counts
  against ``max_connections``; over it the oldest *idle* one (no request in
  progress: handshaking, waiting for or trickling a head, or kept alive) is
  closed, so idle clients can never lock out a new one; with none idle the
  newcomer gets 503;
- a request head must be complete within ``header_timeout`` of the
  connection's start (or of the previous response): bytes trickled one at a
  time do not extend it (uvicorn re-arms its keep-alive timer on every byte);
- TLS runs in the event loop (``start_tls``), with its own deadline.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from asyncio import sslproto
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger(__name__)
_BUSY_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
             b"connection: close\r\nretry-after: 1\r\ncontent-length: 98\r\n\r\n"
             b'{"serviceUnavailable": {"code": 503, "message": "Too many connections; '
             b'try again later."}}')


class ConnectionLimiter:
    """Counts open connections; evicts the oldest idle one over the cap.

    Runs in the event loop's thread only, so it needs no lock.
    """

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0
        self.evicted = 0
        self.refused = 0
        self._idle: OrderedDict[object, Callable[[], None]] = OrderedDict()
        self._gone: set[object] = set()       # evicted, connection_lost still to come

    def opened(self, conn: object, close: Callable[[], None]) -> bool:
        """Admit ``conn`` (idle until ``busy``). False: over the cap with nobody
        to evict; the caller refuses the connection (and still calls ``closed``)."""
        self.open += 1
        self._idle[conn] = close
        while self.open > self.max_connections:
            victim = next((c for c in self._idle if c is not conn), None)
            if victim is None:
                self.refused += 1
                self._idle.pop(conn, None)
                return False
            self._evict(victim)
        return True

    def busy(self, conn: object) -> None:
        self._idle.pop(conn, None)

    def idle(self, conn: object, close: Callable[[], None]) -> None:
        if conn not in self._gone:
            self._idle[conn] = close
            self._idle.move_to_end(conn)

    def closed(self, conn: object) -> None:
        self._idle.pop(conn, None)
        if conn in self._gone:
            self._gone.discard(conn)       # already uncounted when evicted
        else:
            self.open -= 1

    def _evict(self, victim: object) -> None:
        close = self._idle.pop(victim)
        self._gone.add(victim)
        self.open -= 1
        self.evicted += 1
        close()


class _OneSendTransport:
    """A transport that holds a response's writes and sends them at once when
    the response is complete (or the connection closes).

    h11 writes the head and the body separately; a daemon killed between the
    two would leave a client a head with no body. Informational responses
    (100 Continue) go out at once: a client may wait for them.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held and data.startswith((b"HTTP/1.1 1", b"HTTP/1.0 1")):
            self._transport.write(data)
        elif data:
            self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data, self._held = b"".join(self._held), []
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the cap and the head deadline."""

    def __init__(self, *args: Any, limiter: ConnectionLimiter, header_timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limiter, self.header_timeout = limiter, header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._made = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _OneSendTransport(transport)  # type: ignore[assignment]
        self._made = True
        if not self.limiter.opened(self, transport.close):
            transport.write(_BUSY_503)
            transport.close()
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        # Never made (a connection refused over the cap is made): nothing
        # of ours to undo.
        if not self._made:
            return
        self._disarm_head_deadline()
        self.limiter.closed(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:       # a complete head arrived: a request runs
            self._disarm_head_deadline()
            self.limiter.busy(self)

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or
                                                self.cycle.response_complete):
            self.limiter.idle(self, self.transport.close)
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_late)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class _TlsLayer(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer instead of 256 KiB
    (ample for a 64 KiB body: a thousand connections cost 32 MiB, not 256),
    and the time the client last sent something."""
    max_size = 32 * 1024
    last_input = 0.0

    def buffer_updated(self, nbytes: int) -> None:
        self.last_input = time.monotonic()
        super().buffer_updated(nbytes)


class HandshakeSlots:
    """At most ``size`` TLS handshakes at once; the others wait their turn in
    arrival order. A handshake is never cut for being slow (a burst of
    clients on a slow machine would then never finish one), only for a
    client that has kept silent for ``patience`` seconds while others wait:
    the server answers each flight as it arrives, so a silent handshake is
    the client's doing."""

    def __init__(self, size: int, patience: float = 2.0) -> None:
        self.size, self.patience = size, patience
        self.running = 0
        self.cut = 0
        self._waiting: OrderedDict[object, Callable[[], None]] = OrderedDict()
        self._under_way: dict[object, tuple[_TlsLayer, Callable[[], None]]] = {}
        self._check: asyncio.TimerHandle | None = None

    def request(self, key: object, start: Callable[[], None]) -> None:
        if self.running < self.size:
            self.running += 1
            start()
            return
        self._waiting[key] = start
        if self._check is None:
            self._cut_a_silent_one()

    def started(self, key: object, layer: _TlsLayer, abort: Callable[[], None]) -> None:
        self._under_way[key] = (layer, abort)

    def cancel(self, key: object) -> None:
        self._waiting.pop(key, None)
        self._under_way.pop(key, None)

    def _cut_a_silent_one(self) -> None:
        """While someone waits: cut the handshake silent longest, once silent
        past ``patience``; else look again when the first one will be."""
        self._check = None
        if not self._waiting or not self._under_way:
            return
        key, (layer, abort) = min(self._under_way.items(), key=lambda kv: kv[1][0].last_input)
        silent = time.monotonic() - layer.last_input
        if silent > self.patience:
            del self._under_way[key]
            self.cut += 1
            abort()                       # its end frees the slot for the next one
            silent = 0.0
        self._check = asyncio.get_running_loop().call_later(
            max(0.05, self.patience - silent), self._cut_a_silent_one)

    def done(self) -> None:
        self.running -= 1
        while self._waiting and self.running < self.size:
            _, start = self._waiting.popitem(last=False)
            self.running += 1
            start()


class TlsFront(asyncio.Protocol):
    """A TLS connection until its handshake is done; then HTTP takes over.

    asyncio's server-side TLS would build the TLS layer (buffers, an SSL
    object) at accept, and hand the connection to the protocol only after
    the handshake, out of the cap's sight. Here the raw connection counts
    (and can be evicted while it waits) from its accept on, costs no TLS
    state until the client sends its first byte, and at most
    ``slots.size`` handshakes run at once, the others waiting their turn.
    The whole handshake, waiting included, has ``handshake_timeout`` from
    the accept.
    """

    def __init__(self, context: ssl.SSLContext, handshake_timeout: float,
                 limiter: ConnectionLimiter, slots: HandshakeSlots,
                 make_http: Callable[[], asyncio.Protocol]) -> None:
        self.context, self.timeout = context, handshake_timeout
        self.limiter, self.slots, self.make_http = limiter, slots, make_http
        self.transport: asyncio.Transport | None = None
        self._counted = False
        self._first: list[bytes] = []
        self._slot = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._counted = True
        if not self.limiter.opened(self, transport.abort):
            self._release()
            transport.abort()
            return
        self._deadline = asyncio.get_running_loop().call_later(self.timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        """The client's first bytes (its ClientHello): TLS starts with them
        once a handshake slot is free; until then nothing more is read."""
        self._first.append(data)
        if len(self._first) == 1:
            assert self.transport is not None
            self.transport.pause_reading()
            self.slots.request(self, self._start_tls)

    def _start_tls(self) -> None:
        self._slot = True
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            self._release()
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiter.add_done_callback(self._handshake_over)
        # The stub says int; asyncio takes any number of seconds (as the
        # stub of loop.start_tls says).
        tls = _TlsLayer(loop, self.make_http(), self.context, waiter, server_side=True,
                        ssl_handshake_timeout=self.timeout,  # type: ignore[arg-type]
                        call_connection_made=True)
        self.slots.started(self, tls, transport.abort)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        _feed(tls, b"".join(self._first))
        self._first = []
        transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # Reached only before the TLS layer took the transport over.
        self.slots.cancel(self)
        self._release()

    def _handshake_over(self, waiter: asyncio.Future) -> None:
        # Done, failed, timed out or evicted: from here on the HTTP protocol
        # counts (it was made, and counted itself, if the handshake succeeded).
        if not waiter.cancelled():
            waiter.exception()           # retrieved: no "never retrieved" log
        self._release()

    def _release(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._slot:
            self._slot = False
            self.slots.cancel(self)
            self.slots.done()
        if self._counted:
            self._counted = False
            self.limiter.closed(self)


def _feed(tls: sslproto.SSLProtocol, data: bytes) -> None:
    """Hand bytes the plain transport already read to the TLS layer, as the
    transport itself would have (asyncio's buffered-protocol calls)."""
    view = memoryview(data)
    while view:
        buffer = tls.get_buffer(len(view))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        tls.buffer_updated(n)
        view = view[n:]
