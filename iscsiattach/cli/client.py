"""A small HTTP client for iscsiattachd (stdlib only).

Errors are the tree's (``iscsiattach.exception``): a bad command-line value
is InvalidInput (exit 2), a failure on this side of the wire CliError, and
an error answer of the daemon the class of its status (``Client.checked``,
the one place a status becomes an exception on the client side).

One transport for every URL form (http://, https://, unix:/path[:/v3]):
http.client directly, never urllib, so no proxy named by the environment
(http_proxy, https_proxy, ALL_PROXY...) ever sees a request or the token.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import ssl
import urllib.parse
from typing import Any

from iscsiattach.exception import CliError, InvalidInput, error_for_status

DEFAULT_URL = "http://127.0.0.1:8776/v3"
DEFAULT_TOKEN_FILE = "/var/lib/iscsiattach/api-token"
# No answer of the API comes near this; a larger one is a wrong or hostile
# server, and reading it would only fill memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
CACERT_HINT = ("pass --cacert FILE (or set ISCSIATTACH_CACERT) with the daemon's certificate "
               "or its CA")


@dataclasses.dataclass(frozen=True)
class FoundToken:
    """The token and where it came from, for the 401 message (which must
    say where to look, and never print the token itself)."""
    value: str | None
    origin: str         # where it came from; where we looked when value is None

    def unauthorized(self) -> str:
        if self.value is None:
            return f"the daemon requires an API token and none was found: {self.origin} (HTTP 401)"
        return f"the daemon refused the API token from {self.origin} (HTTP 401)"


def find_token(token_file: str | None) -> FoundToken:
    """The token from ISCSIATTACH_TOKEN, else from a file: never from argv,
    where any user could read it in ps."""
    if os.environ.get("ISCSIATTACH_TOKEN"):
        return FoundToken(_header_safe(os.environ["ISCSIATTACH_TOKEN"], "ISCSIATTACH_TOKEN"),
                          "ISCSIATTACH_TOKEN")
    path, named_by = _token_file_path(token_file)
    try:
        with open(path, encoding="utf-8") as f:
            token = _header_safe(f.read().strip(), f"token file {path}")
    except FileNotFoundError:
        if token_file:
            raise CliError(f"token file {path} does not exist") from None
        return FoundToken(None, f"ISCSIATTACH_TOKEN is not set and {path} ({named_by}) "
                                "does not exist")
    except PermissionError:
        raise CliError(f"cannot read token file {path}: permission denied") from None
    except OSError as exc:
        raise CliError(f"cannot read token file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError):     # not text; a NUL in the path
        raise CliError(f"cannot read token file {path!r}: not a text file") from None
    if not token:
        return FoundToken(None, f"ISCSIATTACH_TOKEN is not set and {path} ({named_by}) is empty")
    return FoundToken(token, f"{path} ({named_by})")


def _token_file_path(token_file: str | None) -> tuple[str, str]:
    """The token file to read and what named it."""
    if token_file:
        return token_file, "--token-file"
    if os.environ.get("ISCSIATTACH_TOKEN_FILE"):
        return os.environ["ISCSIATTACH_TOKEN_FILE"], "ISCSIATTACH_TOKEN_FILE"
    return DEFAULT_TOKEN_FILE, "the default token file"


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
        raise InvalidInput(f"invalid id {value!r}")
    # surrogateescape: argv bytes that were not UTF-8 go out as they came in.
    return urllib.parse.quote(value, safe="", errors="surrogateescape")


def query(**params: str | None) -> str:
    """"?k=v&..." of the given parameters (None left out), encoded; or ""."""
    given = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(given, errors="surrogateescape") if given else ""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the daemon is: a TCP host and port (TLS or not) or a Unix
    socket, and the path of its /v3 API on that server."""
    scheme: str                 # "http", "https" or "unix"
    host: str                   # TCP host; "" for a Unix socket
    port: int | None
    socket_path: str            # "" for TCP
    api_path: str               # e.g. "/v3"; requests go to api_path + path
    root_path: str              # the server root: the versions document, /healthz

    @property
    def where(self) -> str:
        """For messages: the socket path or the URL without the API path."""
        if self.scheme == "unix":
            return self.socket_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")


def parse_url(url: str) -> Endpoint:
    """--url / ISCSIATTACH_URL to an Endpoint, or a usage error (exit 2)."""
    # http.client would refuse these later, with messages less clear.
    if not all("!" <= c <= "~" for c in url):
        raise _bad_url(url, "blanks, control or non-ASCII characters")
    if url.startswith("unix:"):
        sock_path, _, prefix = url[5:].partition(":")
        if not sock_path.startswith("/") or (prefix and not prefix.startswith("/")):
            raise _bad_url(url, "expected unix:/path/to/socket[:/v3]")
        return Endpoint("unix", "", None, sock_path, (prefix or "/v3").rstrip("/"), "")
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:                   # "http://[::1", a port that is not a number
        raise _bad_url(url, str(exc)) from None
    if parts.scheme not in ("http", "https"):
        raise _bad_url(url, "expected http://, https:// or unix:")
    if not host:
        raise _bad_url(url, "no host")
    if parts.username is not None or parts.query or parts.fragment:
        # Dropping them silently would send the request somewhere the user did not mean.
        raise _bad_url(url, "user, query or fragment parts are not supported")
    api_path = parts.path.rstrip("/")
    return Endpoint(parts.scheme, host, port, "", api_path, api_path.rsplit("/v3", 1)[0])


def _bad_url(url: str, why: str) -> InvalidInput:
    return InvalidInput(f"invalid daemon URL {url!r}: {why}")


def tls_context(cacert: str | None) -> ssl.SSLContext:
    """Certificates always verified and the host name checked: the system's
    CAs, or only the given CA file (a daemon's self-signed certificate)."""
    if not cacert:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=cacert)
    except FileNotFoundError:
        raise InvalidInput(f"CA certificate file {cacert} does not exist") from None
    except ssl.SSLError:
        raise InvalidInput(f"CA certificate file {cacert} holds no PEM certificate") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read CA certificate file {cacert}: {exc.strerror}") from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def open_connection(endpoint: Endpoint, timeout: float,
                    tls: ssl.SSLContext | None) -> http.client.HTTPConnection:
    """An unconnected http.client connection: no proxy in any case, since
    http.client never reads the environment."""
    if endpoint.scheme == "unix":
        return _UnixConnection(endpoint.socket_path, timeout)
    if endpoint.scheme == "https":
        return http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                           context=tls)
    return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)


def read_bounded(resp: http.client.HTTPResponse, where: str) -> bytes:
    """The body, refused when it is larger than MAX_RESPONSE_BYTES (checked
    on the declared length first, then on what actually arrives)."""
    too_big = CliError(f"iscsiattachd at {where} sent an answer larger than "
                       f"{_size_text(MAX_RESPONSE_BYTES)}; refused")
    if resp.length is not None and resp.length > MAX_RESPONSE_BYTES:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    while chunk := resp.read(min(65536, MAX_RESPONSE_BYTES + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise too_big
    return b"".join(chunks)


def _size_text(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def transport_error(exc: Exception, endpoint: Endpoint, timeout: float) -> CliError:
    """A failed exchange as one line. Never quotes a request header: the
    token is one."""
    where = endpoint.where
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A trusted certificate for another name needs another URL, not a CA.
        hint = ("use a host name or address that the certificate names"
                if "mismatch" in str(exc.verify_message).lower() else CACERT_HINT)
        return CliError(f"the TLS certificate of iscsiattachd at {where} was refused "
                        f"({exc.verify_message}); {hint}")
    if isinstance(exc, ssl.SSLError):
        return CliError(f"TLS with iscsiattachd at {where} failed "
                        f"({exc.reason or type(exc).__name__}); does it serve https there?")
    if isinstance(exc, TimeoutError):
        return CliError(f"iscsiattachd at {where} did not answer within {timeout:g} s")
    if isinstance(exc, http.client.RemoteDisconnected):
        return CliError(f"iscsiattachd at {where} closed the connection without an answer")
    if isinstance(exc, http.client.HTTPException):
        return CliError(f"iscsiattachd at {where} did not answer in HTTP: "
                        f"{type(exc).__name__}")
    if isinstance(exc, OSError):
        return CliError(f"cannot reach iscsiattachd at {where}: {exc.strerror or exc}")
    return CliError(f"cannot talk to iscsiattachd at {where}: {type(exc).__name__}")


class Client:
    def __init__(self, url: str, token: str | None, version: str, timeout: float = 300,
                 cacert: str | None = None, unauthorized: str | None = None) -> None:
        """``unauthorized``: the line to give for a 401 (FoundToken.unauthorized)."""
        self.url, self.token, self.version, self.timeout = url.rstrip("/"), token, version, timeout
        self.unauthorized = unauthorized
        self.endpoint = parse_url(self.url)
        self.tls = tls_context(cacert) if self.endpoint.scheme == "https" else None

    def call(self, method: str, path: str, body: Any = None,
             root: bool = False) -> tuple[int, Any]:
        """``path`` under the API's /v3 URL, or under the server root."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "OpenStack-API-Version": f"volume {self.version}"}
        if self.token:
            headers["X-Auth-Token"] = self.token
        target = (self.endpoint.root_path if root else self.endpoint.api_path) + path
        conn = open_connection(self.endpoint, self.timeout, self.tls)
        try:
            conn.request(method, target or "/", body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, _json(read_bounded(resp, self.endpoint.where))
        except (OSError, http.client.HTTPException) as exc:     # ssl errors are OSErrors
            raise transport_error(exc, self.endpoint, self.timeout) from None
        finally:
            conn.close()

    def serving(self) -> bool:
        """Whether the daemon answers its versions document (300 Multiple
        Choices at the server root): started and serving, not just bound."""
        try:
            return self.call("GET", "/", root=True)[0] == 300
        except CliError:
            return False

    def checked(self, answer: tuple[int, Any], *good: int) -> Any:
        """The body of ``answer`` (a ``call``'s) when its status is one of
        ``good``; else the error of that status (InvalidInput, NotFound...),
        whose exit status the exception tree's table gives."""
        status, body = answer
        if status in good:
            return body
        raise error_for_status(status, self.refusal(status, body))

    def refusal(self, status: int, body: Any) -> str:
        """An error answer as one line; a 401 says which token was refused
        (where it came from, never its value) or where none was found."""
        if status == 401 and self.unauthorized:
            return self.unauthorized
        return fault_message(status, body)


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
