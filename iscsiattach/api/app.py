"""The ASGI application: limits, routing, auth, microversions, faults, once.

Each request goes through the same steps, cheapest refusal first, and the
body is read only when everything before it passed:

1. request target length and header count (414, 431);
2. route (Starlette's router; 404, 405); public routes are served now;
3. token (401), microversion (400, 406), the route's minimum version (404);
4. body: declared size (413, before a byte of it is read), then read within
   ``body_timeout`` (408);
5. schema and handler in a bounded pool of worker threads (503 when full).

Every answer is JSON with Cinder's fault body on errors, and carries the
microversion and request-id headers. One log line per request; lines of
refused requests (4xx) are rate-limited.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match, Route

from iscsiattach.api import microversion as mv, schemas
from iscsiattach.api.auth import noauth_identity, token_matches
from iscsiattach.api.faults import fault_body, to_fault
from iscsiattach.api.limits import Limits
from iscsiattach.api.logsafe import RefusalLimiter
from iscsiattach.api.waiting import (
    MAX_REFUSAL_HOLD,
    MAX_UNAUTHENTICATED_WAIT,
    Cached,
    Pacer,
    RefusalHolds,
    WorkerPool,
)
from iscsiattach.exception import HttpError, InvalidInput
from iscsiattach.secret import Secret

LOG = logging.getLogger(__name__)
# The request being served, for every log line below the API (RequestIdFilter).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A Host header fit to go back into links: a name or address and a port.
_MAX_QUERY_FIELDS = 100
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


class _Uuid36(Convertor[str]):
    """An id segment as Cinder's router takes it, kept as a string."""
    regex = "[0-9a-fA-F-]{36}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _Project(_Uuid36):
    """A project id segment: Cinder's default project_id_regex."""
    regex = r"[0-9a-f\-]+"


register_url_convertor("uuid36", _Uuid36())
register_url_convertor("project", _Project())


class RequestIdFilter(logging.Filter):
    """Adds %(request_id)s to log records: the line of a service call names
    the request that caused it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    raw_body: bytes
    base_url: str
    version: mv.Version = mv.MIN
    project: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    body: Any = None                    # the JSON body, once validated
    authenticated: bool = False         # the token was checked and matched

    def json(self) -> Any:
        return self.body

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None            # a non-JSON body (metrics), with its type
    content_type: str = "application/json"


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Operation:
    """One route: what it answers, what it accepts, who may call it."""
    name: str                           # the operation kind in logs and metrics
    method: str
    path: str                           # Starlette path syntax
    handler: Handler
    min_version: mv.Version = mv.MIN
    body: schemas.BodySchema = None     # None: no body is read
    query: dict[str, dict] = field(default_factory=dict)
    ok: int = 200
    response: dict | None = None        # the success body's schema (OpenAPI)
    more_responses: dict[int, dict] = field(default_factory=dict)  # other non-fault bodies
    public: bool = False                # no token, no microversion: probes, scrapers
    inline: bool = False                # cheap and non-blocking: run in the event loop
    cache_seconds: float = 0.0          # a public answer shared for this long


class Auth:
    """``token``: X-Auth-Token must equal the daemon's token. ``noauth``:
    Cinder's user:project tokens (allowed on loopback only, checked at start)."""

    def __init__(self, strategy: str, token: Secret | None = None) -> None:
        if strategy not in ("token", "noauth") or (strategy == "token" and token is None):
            raise InvalidInput(f"invalid auth strategy {strategy!r}")
        self.strategy, self.token = strategy, token

    def accepts(self, req: Request) -> bool:
        """Whether ``req`` carries a valid token (nothing raised)."""
        try:
            self.check(req)
        except HttpError:
            return False
        return True

    def check(self, req: Request) -> None:
        presented = req.headers.get("x-auth-token")
        if self.token is not None:          # strategy "token"
            if not token_matches(self.token, presented):
                raise HttpError(401, "The request you have made requires authentication.")
            return
        identity = noauth_identity(presented)
        if identity is None:
            raise HttpError(401, "noauth: send X-Auth-Token user:project")
        if req.project is None:
            req.project = identity[1]


class Application:
    def __init__(self, operations: list[Operation], auth: Auth, limits: Limits | None = None,
                 observe: Callable[[str, int, float], None] | None = None) -> None:
        self.operations, self.auth = operations, auth
        self.limits = limits or Limits()
        self.observe = observe
        self.routes = [(route, op) for op in operations for route in _routes(op)]
        self.workers = WorkerPool(self.limits.workers, self.limits.max_queued_requests, "api")
        # Probes and scrapers get their own small pool: they never take a
        # worker from the operations.
        self.public_pool = WorkerPool(1, 32, "api-public")
        self.cache = {op.name: Cached(op.cache_seconds) for op in operations if op.cache_seconds}
        self.refusals = RefusalLimiter(self.limits.refused_log_rate, logger=LOG)
        self.unauthenticated = Pacer(self.limits.unauthenticated_rate, MAX_UNAUTHENTICATED_WAIT)
        self.holds = RefusalHolds(MAX_UNAUTHENTICATED_WAIT, MAX_REFUSAL_HOLD)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        started = time.monotonic()
        req = _request(scope)
        token = REQUEST_ID.set(req.request_id)
        try:
            kind, resp = await self._answer(scope, receive, req)
            if not req.authenticated:
                resp = await self._unauthenticated(resp, scope.get("client"), receive)
            elapsed = time.monotonic() - started
            resp.headers += mv.response_headers(req.version)
            resp.headers.append(("x-openstack-request-id", req.request_id))
            if _body_left_unread(req):
                # Refused before its body was read: end the connection rather
                # than receive (and throw away) what the client still sends.
                resp.headers.append(("Connection", "close"))
            self._log(kind, req, resp.status, elapsed)
            if req.method != "GET" and resp.status < 400:
                for cached in self.cache.values():     # counts changed: no stale scrape
                    cached.value = None
            if self.observe and kind not in ("metrics", "health", "openapi"):
                self.observe(kind, resp.status, elapsed)
            await _send(send, resp)
        finally:
            REQUEST_ID.reset(token)

    async def _answer(self, scope: dict, receive: Callable,
                      req: Request) -> tuple[str, Response]:
        kind = "unrouted"
        try:
            self._check_head(scope)
            op = self._route(scope, req)
            kind = op.name
            return kind, await self._serve(op, req, receive)
        except Exception as error:    # noqa: BLE001 - the one translation point
            status, body = to_fault(error)
            headers = [("Retry-After", "1")] if status == 503 else []
            if kind == "unrouted":
                # Refused before the token was looked at: a token holder's
                # mistake is still answered at once and logged.
                req.authenticated = self.auth.accepts(req)
            return kind, Response(status, body, headers)

    def _check_head(self, scope: dict) -> None:
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > self.limits.max_url_length:
            raise HttpError(414, f"The request target is longer than "
                                 f"{self.limits.max_url_length} bytes.")
        if len(scope["headers"]) > self.limits.max_header_count:
            raise HttpError(431, f"More than {self.limits.max_header_count} header fields.")
        # h11 bounds a head that arrives in pieces; one that came whole in a
        # single read is measured here.
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.limits.max_header_bytes:
            raise HttpError(431, f"The header fields are larger than "
                                 f"{self.limits.max_header_bytes} bytes.")
        if (scope.get("query_string") or b"").count(b"&") >= _MAX_QUERY_FIELDS:
            raise InvalidInput(f"More than {_MAX_QUERY_FIELDS} query parameters.")

    def _route(self, scope: dict, req: Request) -> Operation:
        path = req.path.rstrip("/") or "/"
        probe = {"type": "http", "path": path, "method": req.method}
        partial = False
        for route, op in self.routes:
            match, child = route.matches(probe)
            if match is Match.FULL:
                params = child.get("path_params", {})
                req.project = params.pop("project", None) or req.project
                req.params = params
                return op
            partial = partial or match is Match.PARTIAL
        if partial:
            raise HttpError(405, f"method {req.method} is not allowed on this resource")
        raise HttpError(404, "The resource could not be found.")

    async def _serve(self, op: Operation, req: Request, receive: Callable) -> Response:
        if op.public:
            schemas.validate_query(op.query, req.query)
            return await self._public(op, req)
        self.auth.check(req)
        req.authenticated = True
        req.version = mv.negotiate(req.headers)
        if req.version < op.min_version:
            raise HttpError(404, "The resource could not be found.")
        schemas.validate_query(op.query, req.query)
        if op.body is not None:
            req.raw_body = await self._read_body(req, receive)
        if op.inline:
            return _handle(op, req)
        return await self.workers.run(_handle, op, req)

    async def _public(self, op: Operation, req: Request) -> Response:
        if op.inline:
            return op.handler(req)
        cached = self.cache.get(op.name)
        if cached is None:
            return await self.public_pool.run(op.handler, req)
        return await cached.get(lambda: self.public_pool.run(op.handler, req))

    async def _read_body(self, req: Request, receive: Callable) -> bytes:
        limit = self.limits.max_body_bytes
        declared = req.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit() and len(declared) <= 18):
                raise InvalidInput("Content-Length is not a number")
            if int(declared) > limit:
                raise HttpError(413, f"Request is too large (over {limit} bytes).")
        try:
            return await asyncio.wait_for(_receive_body(receive, limit),
                                          self.limits.body_timeout)
        except TimeoutError:
            raise HttpError(408, "The request body did not arrive in time.") from None

    async def _unauthenticated(self, resp: Response, peer: Any,
                               receive: Callable) -> Response:
        """Answers to anyone without the token (probes, refusals) leave at
        most ``unauthenticated_rate`` a second, all clients together: a
        flood of them cannot take the CPU the operations need. Over
        ``MAX_UNAUTHENTICATED_WAIT`` of queue, a 429, itself held (longer
        each time the same connection is refused again): the connection is
        kept, as a client made to reconnect costs a TLS handshake."""
        delay = self.unauthenticated.reserve()
        if delay is None:
            hold = self.holds.refused(peer)
            # A client that leaves ends its hold: nothing waits on its behalf.
            await wait_unless_gone(hold, receive)
            return Response(429, fault_body(429, "Too many requests without a valid "
                                                 "token; try again later."),
                            [("Retry-After", str(math.ceil(hold)))])
        self.holds.served(peer)
        if delay > 0:
            await asyncio.sleep(delay)
        return resp

    def _log(self, kind: str, req: Request, status: int, elapsed: float) -> None:
        # Refusals of requests without a valid token are what a flood is
        # made of: rate-limited. A token holder's are always logged.
        if 400 <= status < 500 and not req.authenticated and not self.refusals.allow():
            return
        if status < 400:
            self.refusals.flush()
        if not req.authenticated and status < 400:
            # Probes and scrapers: a line each would let a flood of them
            # write the journal full.
            LOG.debug("%s %s %s -> %d in %.3fs", kind, req.method[:16], req.path[:512],
                      status, elapsed)
            return
        # One line per operation; ids are in the path, secrets never are. The
        # formatter escapes control characters (the path is the client's).
        LOG.info("%s %s %s -> %d in %.3fs", kind, req.method[:16], req.path[:512],
                 status, elapsed)


async def wait_unless_gone(seconds: float, receive: Callable) -> bool:
    """Wait ``seconds``, or less if the client disconnects first (True then).
    Whatever body the client still sends meanwhile is received and dropped."""
    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
    try:
        await asyncio.wait_for(gone(), seconds)
    except TimeoutError:
        return False
    return True


async def _receive_body(receive: Callable, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client went away before its body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:                 # chunked: no length declared up front
            raise HttpError(413, f"Request is too large (over {limit} bytes).")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _body_left_unread(req: Request) -> bool:
    if req.raw_body:
        return False
    declared = req.headers.get("content-length", "0")
    return declared != "0" or "transfer-encoding" in req.headers


def _handle(op: Operation, req: Request) -> Response:
    """In a worker thread: the body's JSON and schema, then the handler."""
    if op.body is not None:
        req.body = schemas.validate_body(op.body, req.raw_body, req.version)
    return op.handler(req)


def _routes(op: Operation) -> list[Route]:
    """Starlette routes for ``op``: v3 paths with and without a project id."""
    if not op.path.startswith("/v3"):
        return [Route(op.path, _never, methods=[op.method])]
    tail = op.path[3:]
    return [Route(op.path, _never, methods=[op.method]),
            Route("/v3/{project:project}" + tail, _never, methods=[op.method])]


def _never(*_: Any) -> None:            # Starlette wants an endpoint; we only match
    raise AssertionError("routes are only matched, never called")


def _request(scope: dict) -> Request:
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    host = headers.get("host", "")
    if not _HOST.fullmatch(host):
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    query = scope.get("query_string", b"").decode("latin-1")
    return Request(method=scope["method"], path=scope["path"] or "/", headers=headers,
                   query=_query(query), raw_body=b"",
                   base_url=f"{scope.get('scheme', 'http')}://{host}",
                   request_id=f"req-{uuid.uuid4()}")


def _query(text: str) -> dict[str, list[str]]:
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError:
        return {}                        # refused in _check_head before it matters


async def _send(send: Callable, resp: Response) -> None:
    if resp.raw is not None:
        payload = resp.raw
    else:
        payload = b"" if resp.body is None else json.dumps(resp.body).encode()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    if payload:
        headers.append((b"content-type", resp.content_type.encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
