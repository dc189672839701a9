"""The CLI's transport (issue 13) against tiny stdlib servers: no proxy ever,
verified TLS with --cacert / ISCSIATTACH_CACERT, Unix sockets, bounded
answers, timeouts, the 401 line for each token source, --version and the
noauth warning of `status`.

The servers here are http.server / socketserver, not iscsiattach's own API
server: these tests are about the client alone.
"""
from __future__ import annotations

import configparser
import http.server
import importlib.metadata
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iscsiattach.cli import client as client_mod
from iscsiattach.cli.client import Client, CliError
from iscsiattach.cli.host import ApiAdapter
from iscsiattach.cli.main import main
from iscsiattach.exception import IscsiAttachError

TOKEN = "transport-token-" + "z" * 24
ERROR = "iscsiattach: error: "
WARNING = "iscsiattach: warning: "
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "all_proxy")
HEALTH = {"ready": True, "counts": {"volumes": 0, "attachments": 0},
          "last_reconcile": None}
REPO = Path(__file__).resolve().parents[2]

# A route answers (status, JSON body), or is a function that writes the answer itself.
Route = tuple[int, Any] | Callable[[http.server.BaseHTTPRequestHandler], None]


# -- tiny servers ---------------------------------------------------------------------
class Recorder:
    """What a test server saw: (method, path, headers) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


def handler_for(routes: dict[str, Route], seen: Recorder) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.requests.append((self.command, self.path, dict(self.headers.items())))
            route = routes.get(self.path.split("?")[0], (404, {"itemNotFound": {
                "message": "no such route", "code": 404}}))
            if callable(route):
                route(self)
                return
            status, body = route
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args: Any) -> None:       # quiet test output
            pass

    return Handler


class TcpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def serve(server: socketserver.BaseServer) -> socketserver.BaseServer:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server


def stop(server: socketserver.BaseServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(monkeypatch) -> pytest.MonkeyPatch:
    """No ISCSIATTACH_* or proxy settings from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("ISCSIATTACH_") or name.lower() in ("no_proxy", *PROXY_VARS):
            monkeypatch.delenv(name)
    # No token file of this machine either.
    monkeypatch.setattr(client_mod, "DEFAULT_TOKEN_FILE", "/nonexistent/iscsiattach/api-token")
    return monkeypatch


@pytest.fixture
def http_daemon(env) -> Iterator[tuple[str, Recorder, dict[str, Route]]]:
    """A plain HTTP server: its /v3 URL, what it saw, and its routes (mutable)."""
    seen, routes = Recorder(), default_routes()
    srv = serve(TcpServer(("127.0.0.1", 0), handler_for(routes, seen)))
    yield f"http://127.0.0.1:{srv.server_address[1]}/v3", seen, routes
    stop(srv)


def default_routes() -> dict[str, Route]:
    return {"/v3/volumes/detail": (200, {"volumes": [{"id": "v1", "status": "available",
                                                       "name": "data", "size": 1,
                                                       "multiattach": False}]}),
            "/healthz": (200, dict(HEALTH)), "/": (300, {"versions": []})}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:                       # argparse: --version, -h, usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> bool:
    return err.startswith(ERROR) and err.endswith("\n") and err.count("\n") == 1


# -- certificates (openssl CLI; the venv has no `cryptography`) --------------------------
def make_cert(directory: Path, name: str, san: str) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    return {"local": make_cert(d, "iscsiattachd-test", "IP:127.0.0.1,DNS:localhost"),
            "other": make_cert(d, "other.invalid", "DNS:other.invalid")}


def tls_server(cert: Path, key: Path, routes: dict[str, Route],
               seen: Recorder) -> socketserver.BaseServer:
    srv = TcpServer(("127.0.0.1", 0), handler_for(routes, seen))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    return serve(srv)


@pytest.fixture
def tls_daemon(env, certs) -> Iterator[tuple[str, Recorder, Path]]:
    """An HTTPS server with a self-signed certificate for 127.0.0.1: its
    /v3 URL, what it saw, and the certificate to trust."""
    seen = Recorder()
    cert, key = certs["local"]
    srv = tls_server(cert, key, default_routes(), seen)
    yield f"https://127.0.0.1:{srv.server_address[1]}/v3", seen, cert
    stop(srv)


# -- a proxy that must never be used -------------------------------------------------
class ProxyTrap:
    """A listening socket that records every connection and closes it at
    once (so a client that did use it fails fast rather than hanging)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def proxy_trap(env) -> Iterator[ProxyTrap]:
    trap = ProxyTrap()
    for name in PROXY_VARS:
        env.setenv(name, trap.url)
    yield trap
    trap.close()


def test_http_never_goes_through_a_proxy(http_daemon, proxy_trap, capsys, monkeypatch):
    url, seen, _ = http_daemon
    assert {os.environ[k] for k in PROXY_VARS} == {proxy_trap.url}
    assert "no_proxy" not in os.environ and "NO_PROXY" not in os.environ
    monkeypatch.setenv("ISCSIATTACH_TOKEN", TOKEN)
    code, out, err = cli(capsys, "--url", url, "volume-list")
    assert (code, err) == (0, "") and "data" in out
    assert seen.paths() == ["/v3/volumes/detail"]
    assert seen.requests[0][2]["X-Auth-Token"] == TOKEN
    assert proxy_trap.connections == 0


def test_https_never_goes_through_a_proxy(tls_daemon, proxy_trap, capsys, monkeypatch):
    url, seen, cert = tls_daemon
    monkeypatch.setenv("ISCSIATTACH_TOKEN", TOKEN)
    code, out, err = cli(capsys, "--url", url, "--cacert", str(cert), "volume-list")
    assert (code, err) == (0, "") and "data" in out
    assert seen.requests[0][2]["X-Auth-Token"] == TOKEN
    assert proxy_trap.connections == 0


def test_the_proxy_trap_does_see_a_client_that_uses_proxies(proxy_trap):
    """The trap is a real listener: urllib (which honours http_proxy) is caught.
    (A new opener: urlopen's global one keeps the proxies of its first use.)"""
    import urllib.request
    with pytest.raises(OSError):
        urllib.request.build_opener().open("http://127.0.0.1:9/v3", timeout=5)
    assert proxy_trap.connections == 1


def test_the_cli_module_does_not_use_urllib_request():
    src = (REPO / "iscsiattach" / "cli" / "client.py").read_text()
    assert "urllib.request" not in src and "urlopen" not in src


# -- TLS ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["option", "env"])
def test_tls_accepted_with_the_daemon_certificate(tls_daemon, capsys, env, how):
    url, seen, cert = tls_daemon
    if how == "env":
        env.setenv("ISCSIATTACH_CACERT", str(cert))
        argv = ["--url", url, "--format", "json", "volume-list"]
    else:
        argv = ["--url", url, "--cacert", str(cert), "--format", "json", "volume-list"]
    code, out, err = cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert json.loads(out)[0]["id"] == "v1"
    assert seen.paths() == ["/v3/volumes/detail"]


def test_tls_refused_without_cacert_in_one_line(tls_daemon, capsys, env):
    url, seen, _ = tls_daemon
    env.setenv("ISCSIATTACH_TOKEN", TOKEN)
    code, out, err = cli(capsys, "--url", url, "volume-list")
    assert code == 1 and out == "" and one_error_line(err)
    assert "certificate" in err and "--cacert" in err and "ISCSIATTACH_CACERT" in err
    assert TOKEN not in err
    assert seen.requests == []                   # nothing sent before the check


def test_tls_refused_with_another_certificate_as_cacert(tls_daemon, certs, capsys):
    url, seen, _ = tls_daemon
    code, _, err = cli(capsys, "--url", url, "--cacert", str(certs["other"][0]), "volume-list")
    assert code == 1 and one_error_line(err) and "--cacert" in err
    assert seen.requests == []


def test_tls_host_name_is_checked_even_with_cacert(env, certs, capsys):
    cert, key = certs["other"]                   # a certificate for other.invalid only
    seen = Recorder()
    srv = tls_server(cert, key, default_routes(), seen)
    try:
        code, _, err = cli(capsys, "--url", f"https://127.0.0.1:{srv.server_address[1]}/v3",
                           "--cacert", str(cert), "volume-list")
    finally:
        stop(srv)
    assert code == 1 and one_error_line(err) and "mismatch" in err
    assert seen.requests == []


def test_https_url_to_a_plain_http_server(http_daemon, capsys):
    url, _, _ = http_daemon
    code, _, err = cli(capsys, "--url", url.replace("http:", "https:"), "volume-list")
    assert code == 1 and one_error_line(err) and "TLS" in err


def test_cacert_that_cannot_be_used_is_a_usage_error(tls_daemon, capsys, tmp_path):
    url, seen, _ = tls_daemon
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    for path, why in ((tmp_path / "missing.pem", "does not exist"),
                      (not_pem, "no PEM certificate")):
        code, _, err = cli(capsys, "--url", url, "--cacert", str(path), "volume-list")
        assert code == 2 and one_error_line(err) and why in err
    assert seen.requests == []


# -- Unix socket ------------------------------------------------------------------------
def test_unix_socket_api_and_root_paths(env, capsys, tmp_path):
    seen, routes = Recorder(), default_routes()
    routes["/api/v3/volumes/detail"] = routes["/v3/volumes/detail"]
    sock = tmp_path / "api.sock"
    srv = serve(UnixServer(str(sock), handler_for(routes, seen)))
    env.setenv("ISCSIATTACH_TOKEN", TOKEN)
    try:
        code, out, err = cli(capsys, "--url", f"unix:{sock}", "volume-list")
        assert (code, err) == (0, "") and "data" in out
        code, out, err = cli(capsys, "--url", f"unix:{sock}:/api/v3", "volume-list")
        assert (code, err) == (0, "") and "data" in out
        code, out, err = cli(capsys, "--url", f"unix:{sock}", "status")
        assert (code, err) == (0, "") and "| ready" in out
        assert Client(f"unix:{sock}", None, "3.54", timeout=5).serving()
    finally:
        stop(srv)
    assert seen.paths() == ["/v3/volumes/detail", "/api/v3/volumes/detail", "/healthz", "/"]
    assert seen.requests[0][2]["X-Auth-Token"] == TOKEN
    code, _, err = cli(capsys, "--url", f"unix:{sock}", "volume-list")     # server gone
    assert code == 1 and one_error_line(err) and "cannot reach iscsiattachd" in err


# -- bounded answers and timeouts --------------------------------------------------------
def stream_body(size: int, declared: bool) -> Callable:
    """An answer of ``size`` bytes, with Content-Length or close-delimited."""
    def write(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if declared:
            h.send_header("Content-Length", str(size))
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for start in range(0, size, 65536):
                h.wfile.write(b" " * min(65536, size - start))
        except OSError:                           # the client hung up: as it should
            pass
    return write


def test_an_answer_declared_larger_than_16_mib_is_refused(http_daemon):
    url, _, routes = http_daemon

    def declares_too_much(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(16 * 1024 * 1024 + 1))
        h.end_headers()
        h.close_connection = True
        h.wfile.write(b"{}")                      # and never the rest
    routes["/v3/volumes/detail"] = declares_too_much
    with pytest.raises(CliError, match="larger than 16 MiB; refused"):
        Client(url, None, "3.54", timeout=5).call("GET", "/volumes/detail")


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_larger_than_the_cap_is_refused_as_it_arrives(http_daemon, monkeypatch,
                                                                 declared):
    url, _, routes = http_daemon
    monkeypatch.setattr(client_mod, "MAX_RESPONSE_BYTES", 100_000)
    routes["/v3/exact"] = stream_body(100_000, declared)
    routes["/v3/over"] = stream_body(100_001, declared)
    client = Client(url, None, "3.54", timeout=5)
    assert client.call("GET", "/exact")[0] == 200        # up to the cap: accepted
    with pytest.raises(CliError, match="larger than 100000 bytes; refused"):
        client.call("GET", "/over")


def test_a_silent_daemon_times_out_in_one_line(http_daemon):
    url, _, routes = http_daemon
    release = threading.Event()
    routes["/v3/volumes/detail"] = lambda h: release.wait(10)
    try:
        with pytest.raises(CliError, match=r"did not answer within 0\.3 s"):
            Client(url, None, "3.54", timeout=0.3).call("GET", "/volumes/detail")
    finally:
        release.set()


@pytest.mark.parametrize("url", [
    "garbage", "ftp://127.0.0.1/v3", "http://127.0.0.1:notaport/v3", "http://[::1",
    "http:///v3", "http://127.0.0.1:9/v3 x", "http://127.0.0.1:9/v3\n", "http://é/v3",
    "http://user:pw@127.0.0.1:9/v3", "http://127.0.0.1:9/v3?x=1", "http://127.0.0.1:9/v3#f",
    "unix:", "unix:relative.sock", "unix:/run/api.sock:v3"])
def test_invalid_urls_are_usage_errors(env, capsys, url):
    env.setenv("ISCSIATTACH_TOKEN", TOKEN)
    code, out, err = cli(capsys, "--url", url, "volume-list")
    assert code == 2 and out == "" and one_error_line(err) and "invalid daemon URL" in err
    assert TOKEN not in err


# -- 401: where the token came from -------------------------------------------------------
@pytest.fixture
def refusing_daemon(http_daemon) -> str:
    url, _, routes = http_daemon
    for path in ("/v3/volumes/detail", "/v3/attachments"):
        routes[path] = (401, {"error": {"message": "unauthorized", "code": 401}})
    return url


def write_token(path: Path) -> str:
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def test_401_names_the_environment_variable(refusing_daemon, env, capsys, tmp_path):
    env.setenv("ISCSIATTACH_TOKEN", TOKEN)
    env.setenv("ISCSIATTACH_TOKEN_FILE", write_token(tmp_path / "tok"))   # ignored: env first
    code, out, err = cli(capsys, "--url", refusing_daemon, "volume-list")
    assert code == 1 and out == "" and one_error_line(err)
    assert err == (f"{ERROR}the daemon refused the API token from ISCSIATTACH_TOKEN "
                   "(HTTP 401)\n")


@pytest.mark.parametrize("named_by", ["--token-file", "ISCSIATTACH_TOKEN_FILE",
                                      "the default token file"])
def test_401_names_the_token_file_and_what_named_it(refusing_daemon, env, capsys, tmp_path,
                                                    named_by):
    path = write_token(tmp_path / "api-token")
    argv = ["--url", refusing_daemon, "volume-list"]
    if named_by == "--token-file":
        argv[:0] = ["--token-file", path]
    elif named_by == "ISCSIATTACH_TOKEN_FILE":
        env.setenv("ISCSIATTACH_TOKEN_FILE", path)
    else:
        env.setattr(client_mod, "DEFAULT_TOKEN_FILE", path)
    code, _, err = cli(capsys, *argv)
    assert code == 1 and one_error_line(err) and TOKEN not in err
    assert err == f"{ERROR}the daemon refused the API token from {path} ({named_by}) (HTTP 401)\n"


def test_401_without_a_token_says_where_it_looked(refusing_daemon, capsys):
    code, _, err = cli(capsys, "--url", refusing_daemon, "volume-list")
    assert code == 1 and one_error_line(err)
    assert err == (f"{ERROR}the daemon requires an API token and none was found: "
                   "ISCSIATTACH_TOKEN is not set and /nonexistent/iscsiattach/api-token "
                   "(the default token file) does not exist (HTTP 401)\n")


def test_401_with_an_empty_token_file(refusing_daemon, env, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    env.setenv("ISCSIATTACH_TOKEN_FILE", str(empty))
    code, _, err = cli(capsys, "--url", refusing_daemon, "volume-list")
    assert code == 1 and one_error_line(err)
    assert f"none was found: ISCSIATTACH_TOKEN is not set and {empty} " \
           "(ISCSIATTACH_TOKEN_FILE) is empty (HTTP 401)" in err


def test_401_on_the_host_side_says_the_same(refusing_daemon):
    unauthorized = "the daemon refused the API token from ISCSIATTACH_TOKEN (HTTP 401)"
    api = ApiAdapter(Client(refusing_daemon, TOKEN, "3.54", timeout=5,
                            unauthorized=unauthorized))
    with pytest.raises(IscsiAttachError) as err:
        api.attachment_list("v1")
    assert str(err.value) == unauthorized


def test_other_errors_keep_the_daemon_message(http_daemon, capsys):
    url, _, _ = http_daemon
    code, _, err = cli(capsys, "--url", url, "volume-show", "nope")
    assert code == 1 and err == f"{ERROR}no such route (HTTP 404)\n"


# -- --version and -h ---------------------------------------------------------------------
def setup_cfg_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg["metadata"]["version"]


def test_version_from_the_installed_package(env, capsys):
    code, out, err = cli(capsys, "--version")
    assert (code, err) == (0, "")
    assert out == f"iscsiattach {importlib.metadata.version('iscsiattach')}\n"
    assert out == f"iscsiattach {setup_cfg_version()}\n"


def test_version_falls_back_to_setup_cfg(env, capsys):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)
    env.setattr(importlib.metadata, "version", not_installed)
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out == f"iscsiattach {setup_cfg_version()}\n"


def test_help_documents_version_cacert_and_the_environment(env, capsys):
    code, out, _ = cli(capsys, "-h")
    assert code == 0
    for word in ("--version", "--cacert", "ISCSIATTACH_CACERT", "ISCSIATTACH_TOKEN_FILE",
                 "ISCSIATTACH_TOKEN ", "ISCSIATTACH_URL", "/var/lib/iscsiattach/api-token",
                 "proxy"):
        assert word in out, word


# -- status and the daemon's auth strategy -------------------------------------------------
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_status_warns_when_the_daemon_runs_without_auth(http_daemon, capsys, fmt):
    url, _, routes = http_daemon
    routes["/healthz"] = (200, {**HEALTH, "auth_strategy": "noauth"})
    code, out, err = cli(capsys, "--url", url, "--format", fmt, "status")
    assert code == 0
    assert err.startswith(WARNING) and err.count("\n") == 1 and "any local user" in err
    if fmt == "json":
        assert json.loads(out)["auth_strategy"] == "noauth"
    else:
        assert "| auth strategy" in out and "noauth" in out


def test_status_with_token_auth_has_no_warning(http_daemon, capsys):
    url, _, routes = http_daemon
    routes["/healthz"] = (200, {**HEALTH, "auth_strategy": "token"})
    code, out, err = cli(capsys, "--url", url, "status")
    assert (code, err) == (0, "") and "| auth strategy" in out and "token" in out


def test_status_of_an_older_daemon_shows_nothing_extra(http_daemon, capsys):
    url, _, _ = http_daemon
    code, out, err = cli(capsys, "--url", url, "status")
    assert (code, err) == (0, "") and "| ready" in out
    assert "auth" not in out
