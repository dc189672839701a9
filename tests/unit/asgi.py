"""Drive the ASGI app in-process from a WSGI-style environ (no sockets):
what the unit and fuzz suites send, as uvicorn would hand it over."""
from __future__ import annotations

import asyncio
from typing import Any


def scope_of(environ: dict[str, Any]) -> dict[str, Any]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower().encode("latin-1"),
                            _wire(value)))
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower().encode(), environ[key].encode()))
    path = environ.get("PATH_INFO") or "/"
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": environ["REQUEST_METHOD"], "scheme": environ.get("wsgi.url_scheme", "http"),
            "path": path, "raw_path": path.encode("utf-8", "surrogateescape"),
            "query_string": environ.get("QUERY_STRING", "").encode("latin-1", "replace"),
            "headers": headers, "server": ("127.0.0.1", 8776), "client": ("127.0.0.1", 40000)}


def _wire(value: str) -> bytes:
    """A header value as a client puts it on the wire: latin-1 where it
    can, else UTF-8 bytes (which the server then reads as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def call(app, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of one request."""
    body = environ["wsgi.input"].read()
    return asyncio.run(_call(app, scope_of(environ), body))


async def _call(app, scope, body: bytes):
    sent: dict[str, Any] = {"body": b""}
    delivered = False

    async def receive():
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = [(k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in message["headers"]]
        else:
            sent["body"] += message.get("body", b"")
    await app(scope, receive, send)
    return sent["status"], sent["headers"], sent["body"]
