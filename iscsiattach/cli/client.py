"""A small HTTP client for iscsiattachd (stdlib only), errors as CliError."""
from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8776/v3"
DEFAULT_TOKEN_FILE = "/var/lib/iscsiattach/api-token"


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_token(token_file: str | None) -> str | None:
    """The token from ISCSIATTACH_TOKEN, else from a file: never from argv,
    where any user could read it in ps."""
    if os.environ.get("ISCSIATTACH_TOKEN"):
        return _header_safe(os.environ["ISCSIATTACH_TOKEN"], "ISCSIATTACH_TOKEN")
    path = token_file or os.environ.get("ISCSIATTACH_TOKEN_FILE") or DEFAULT_TOKEN_FILE
    try:
        with open(path, encoding="utf-8") as f:
            return _header_safe(f.read().strip(), f"token file {path}")
    except FileNotFoundError:
        if token_file:
            raise CliError(f"token file {path} does not exist") from None
        return None
    except PermissionError:
        raise CliError(f"cannot read token file {path}: permission denied") from None
    except OSError as exc:
        raise CliError(f"cannot read token file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError):     # not text; a NUL in the path
        raise CliError(f"cannot read token file {path!r}: not a text file") from None


def _header_safe(token: str, where: str) -> str:
    """Printable ASCII without blanks, as an HTTP header carries it. Checked
    here so that no later error (http.client quotes bad header values) can
    ever print the token."""
    if not all("!" <= c <= "~" for c in token):
        raise CliError(f"the API token in {where} has characters an HTTP header cannot "
                       "carry (blanks, control or non-ASCII characters)")
    return token


def segment(value: str) -> str:
    """One path segment from the command line: percent-encoded, so an id
    like "../volumes" or "a?b" can never reach another resource."""
    if value in ("", ".", ".."):
        raise CliError(f"invalid id {value!r}", exit_code=2)
    # surrogateescape: argv bytes that were not UTF-8 go out as they came in.
    return urllib.parse.quote(value, safe="", errors="surrogateescape")


def query(**params: str | None) -> str:
    """"?k=v&..." of the given parameters (None left out), encoded; or ""."""
    given = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(given, errors="surrogateescape") if given else ""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Client:
    def __init__(self, url: str, token: str | None, version: str, timeout: float = 300) -> None:
        self.url, self.token, self.version, self.timeout = url.rstrip("/"), token, version, timeout

    def call(self, method: str, path: str, body: Any = None,
             root: bool = False) -> tuple[int, Any]:
        """``path`` under the API's /v3 URL, or under the server root."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "OpenStack-API-Version": f"volume {self.version}"}
        if self.token:
            headers["X-Auth-Token"] = self.token
        if self.url.startswith("unix:"):
            return self._unix(method, path, data, headers, root)
        base = self.url.rsplit("/v3", 1)[0] if root else self.url
        try:
            req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach iscsiattachd at {self.url}: {reason}") from None
        except (ValueError, http.client.InvalidURL) as exc:
            # A malformed --url. (The token was checked on load: http.client's
            # messages about bad header values would quote it.)
            raise CliError(f"invalid daemon URL {self.url!r}: {exc}", exit_code=2) from None
        except http.client.HTTPException as exc:
            raise CliError(f"iscsiattachd at {self.url} did not answer in HTTP: "
                           f"{type(exc).__name__}") from None

    def serving(self) -> bool:
        """Whether the daemon answers its versions document (300 Multiple
        Choices at the server root): started and serving, not just bound."""
        try:
            return self.call("GET", "/", root=True)[0] == 300
        except CliError:
            return False

    def _unix(self, method, path, data, headers, root) -> tuple[int, Any]:
        sock_path, _, prefix = self.url[5:].partition(":")
        conn = _UnixConnection(sock_path, self.timeout)
        try:
            conn.request(method, ("" if root else prefix or "/v3") + path, body=data,
                         headers=headers)
            resp = conn.getresponse()
            return resp.status, _json(resp.read())
        except OSError as exc:
            raise CliError(f"cannot reach iscsiattachd at {sock_path}: {exc.strerror}") from None
        except http.client.HTTPException as exc:
            raise CliError(f"iscsiattachd at {sock_path} did not answer in HTTP: "
                           f"{type(exc).__name__}") from None
        finally:
            conn.close()


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data.decode(errors="replace")[:200]}


def fault_message(status: int, body: Any) -> str:
    """Cinder's fault body to one line."""
    if isinstance(body, dict) and body:
        inner = next(iter(body.values()))
        if isinstance(inner, dict) and "message" in inner:
            return f"{inner['message']} (HTTP {status})"
        if "message" in body:
            return f"{body['message']} (HTTP {status})"
    return f"HTTP {status}"
