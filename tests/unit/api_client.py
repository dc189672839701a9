"""A small in-process client for the API app (no sockets)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from tests.unit import asgi


class _Headers(dict):
    """Response headers, looked up without regard to case (as HTTP has them)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__((k.lower(), v) for k, v in pairs)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    def __init__(self, app, token: str | None, version: str | None = "3.54") -> None:
        self.app, self.token, self.version = app, token, version

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                               else b"")
        path, _, query = path.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "wsgi.input": io.BytesIO(payload), "CONTENT_LENGTH": str(len(payload)),
                   "CONTENT_TYPE": "application/json", "wsgi.url_scheme": "http",
                   "HTTP_HOST": "127.0.0.1:8776"}
        if self.token is not None:
            environ["HTTP_X_AUTH_TOKEN"] = self.token
        if self.version:
            environ["HTTP_OPENSTACK_API_VERSION"] = f"volume {self.version}"
        for k, v in (headers or {}).items():
            environ["HTTP_" + k.upper().replace("-", "_")] = v
        status, hdrs, out = asgi.call(self.app, environ)
        headers = _Headers(hdrs)
        if not out:
            return Reply(status, headers, None)
        is_json = headers.get("Content-Type", "").startswith("application/json")
        return Reply(status, headers, json.loads(out) if is_json else out.decode())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)
