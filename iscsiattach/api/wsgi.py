"""WSGI plumbing: requests in, JSON out; auth, microversions and faults once.

Routes are (method, pattern, handler, minimum microversion). Every v3 route
answers both with and without a project id in the path, as Cinder does.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from iscsiattach.api import microversion as mv
from iscsiattach.api.auth import noauth_identity, token_matches
from iscsiattach.api.faults import HttpError, to_fault
from iscsiattach.exception import InvalidInput
from iscsiattach.secret import Secret

LOG = logging.getLogger(__name__)
MAX_BODY = 64 << 10
# The request being served, for every log line below the API (RequestIdFilter).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds %(request_id)s to log records: the line of a service call names
    the request that caused it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True
_PROJECT = r"(?:/(?P<project>[0-9a-f\-]+))?"


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

    def json(self) -> Any:
        if not self.raw_body:
            raise InvalidInput("a JSON body is required")
        try:
            value = json.loads(self.raw_body, parse_constant=_no_constant)
            # A "\ud800" escape decodes to a lone surrogate, which no layer
            # below can store or log as UTF-8: refuse it here, once.
            json.dumps(value, ensure_ascii=False).encode()
            return value
        # RecursionError: nesting deeper than the interpreter's stack ("[" * 5000),
        # which fits in a body of any allowed size.
        except (ValueError, UnicodeError, RecursionError):
            raise InvalidInput("Malformed request body") from None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python's parser takes them."""
    raise ValueError(f"{name} is not JSON")


@dataclass
class Response:
    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None            # a non-JSON body (metrics), with its type
    content_type: str = "application/json"


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: Handler
    min_version: mv.Version
    name: str = ""          # the operation kind in logs and metrics


def v3_route(method: str, tail: str, handler: Handler, name: str,
             min_version: mv.Version = mv.MIN) -> Route:
    return Route(method, re.compile(rf"/v3{_PROJECT}{tail}/?"), handler, min_version, name)


class Auth:
    """``token``: X-Auth-Token must equal the daemon's token. ``noauth``:
    Cinder's user:project tokens (allowed on loopback only, checked at start)."""

    def __init__(self, strategy: str, token: Secret | None = None) -> None:
        if strategy not in ("token", "noauth") or (strategy == "token" and token is None):
            raise InvalidInput(f"invalid auth strategy {strategy!r}")
        self.strategy, self.token = strategy, token

    def check(self, req: Request) -> None:
        presented = req.headers.get("x-auth-token")
        if self.strategy == "token":
            if not token_matches(self.token, presented):
                raise HttpError(401, "The request you have made requires authentication.")
            return
        identity = noauth_identity(presented)
        if identity is None:
            raise HttpError(401, "noauth: send X-Auth-Token user:project")
        if req.project is None:
            req.project = identity[1]


class Application:
    def __init__(self, routes: list[Route], auth: Auth, public_routes: list[Route],
                 observe: Callable[[str, int, float], None] | None = None) -> None:
        self.routes, self.auth, self.public = routes, auth, public_routes
        self.observe = observe

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        started = time.monotonic()
        req = self._request(environ)
        token = REQUEST_ID.set(req.request_id)
        try:
            return self._serve(req, started, start_response)
        finally:
            REQUEST_ID.reset(token)

    def _serve(self, req: Request, started: float, start_response) -> list[bytes]:
        kind = ["unrouted"]
        try:
            resp = self._dispatch(req, kind)
        except Exception as error:    # noqa: BLE001 - the one translation point
            status, body = to_fault(error)
            resp = Response(status, body)
        elapsed = time.monotonic() - started
        resp.headers += mv.response_headers(req.version)
        resp.headers.append(("x-openstack-request-id", req.request_id))
        # One line per operation; ids are in the path, secrets never are.
        LOG.info("%s %s %s -> %d in %.3fs", kind[0], req.method, req.path,
                 resp.status, elapsed)
        if self.observe and kind[0] not in ("metrics", "health"):
            self.observe(kind[0], resp.status, elapsed)
        return _send(resp, start_response)

    def _dispatch(self, req: Request, kind: list[str]) -> Response:
        route = self._match(req, self.public)
        if route is not None:
            kind[0] = route.name
            return route.handler(req)
        route = self._match(req, self.routes)
        if route is None:
            raise HttpError(404, "The resource could not be found.")
        kind[0] = route.name
        self.auth.check(req)
        req.version = mv.negotiate(req.headers)
        if req.version < route.min_version:
            raise HttpError(404, "The resource could not be found.")
        if req.method in ("POST", "PUT") and len(req.raw_body) > MAX_BODY:
            raise HttpError(413, "Request is too large.")
        return route.handler(req)

    @staticmethod
    def _match(req: Request, routes: list[Route]) -> Route | None:
        path_matched = False
        for route in routes:
            m = route.pattern.fullmatch(req.path)
            if not m:
                continue
            path_matched = True
            if route.method == req.method:
                req.params = {k: v for k, v in m.groupdict().items() if k != "project"}
                req.project = m.groupdict().get("project") or req.project
                return route
        if path_matched:
            raise HttpError(405, f"method {req.method} is not allowed on {req.path}")
        return None

    @staticmethod
    def _request(environ: dict) -> Request:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(min(length, MAX_BODY + 1)) if length > 0 else b""
        scheme, host = environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST")
        host = host or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '')}"
        return Request(method=environ["REQUEST_METHOD"].upper(),
                       path=environ.get("PATH_INFO") or "/", headers=headers,
                       query=parse_qs(environ.get("QUERY_STRING", "")), raw_body=body,
                       base_url=f"{scheme}://{host}",
                       request_id=f"req-{uuid.uuid4()}")


def _send(resp: Response, start_response) -> list[bytes]:
    if resp.raw is not None:
        payload = resp.raw
    else:
        payload = b"" if resp.body is None else json.dumps(resp.body).encode()
    headers = list(resp.headers)
    if payload:
        headers.append(("Content-Type", resp.content_type))
    headers.append(("Content-Length", str(len(payload))))
    reason = _REASONS.get(resp.status, "")
    start_response(f"{resp.status} {reason}".strip(), headers)
    return [payload]


_REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 300: "Multiple Choices",
            400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
            413: "Request Entity Too Large", 500: "Internal Server Error"}
