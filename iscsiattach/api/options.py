"""Options of the REST API, group [api], and the checks the daemon runs on
them at start (before anything is touched)."""
from __future__ import annotations

import os
import ssl

from oslo_config import cfg

from iscsiattach.api.auth import check_noauth_listen
from iscsiattach.api.listen import Listen, TcpListen, UnixListen, parse_listen
from iscsiattach.exception import InvalidInput

GROUP = "api"

API_OPTS = [
    cfg.StrOpt("listen", default="127.0.0.1",
               help="Address the API listens on (IPv4 or IPv6), or unix:/path for a "
                    "Unix socket (created 0600; the path must be absolute)."),
    cfg.PortOpt("port", default=8776, help="TCP port of the API (Cinder's is 8776)."),
    cfg.StrOpt("auth_strategy", default="token", choices=["token", "noauth"],
               help="token: X-Auth-Token must equal the secret in token_file. noauth: "
                    "Cinder's user:project tokens, refused unless listening on loopback "
                    "or a Unix socket."),
    cfg.StrOpt("token_file", default=None,
               help="File holding the API token (0600, owned by the daemon's user, "
                    "not a symlink); made on first start. Default: "
                    "<state_path>/api-token."),
    cfg.StrOpt("tls_cert_file", default=None,
               help="PEM certificate: serve HTTPS when set (with tls_key_file)."),
    cfg.StrOpt("tls_key_file", default=None, help="PEM private key of tls_cert_file."),
    cfg.BoolOpt("allow_insecure_transport", default=False,
                help="Allow auth_strategy token on a listen address other than "
                     "loopback without TLS. The token then crosses the network in "
                     "clear text with every request, and anyone who sees the "
                     "traffic can use the API: set this only on a network you "
                     "trust (a dedicated, isolated storage network). A warning is "
                     "logged at every start. When false, such a setting refuses "
                     "to start; set tls_cert_file and tls_key_file instead."),
]

# Every limit of the network face, with a safe default. A client that goes
# over one gets a 4xx (or its connection closed, for broken HTTP) and costs
# no more than the limit: see docs/reliability.md, "Denial of service".
LIMIT_OPTS = [
    cfg.IntOpt("max_header_bytes", default=32768, min=1024, max=1 << 20,
               help="Largest request head (request line and all headers) in bytes; "
                    "a longer one is refused with 400 and the connection closed."),
    cfg.IntOpt("max_header_count", default=100, min=8, max=1000,
               help="Most header fields in one request; more are refused with 431."),
    cfg.IntOpt("max_url_length", default=8192, min=256, max=65536,
               help="Longest request target (path and query) in bytes; longer is 414."),
    cfg.IntOpt("max_body_bytes", default=65536, min=1024, max=16 << 20,
               help="Largest request body in bytes. A larger declared Content-Length is "
                    "refused with 413 before any of the body is read, and only after "
                    "the token was checked."),
    cfg.IntOpt("max_connections", default=1000, min=8, max=100000,
               help="Most open client connections (TLS handshakes included). Over it, "
                    "the oldest idle connection is closed to admit the new one; with "
                    "none idle the new one gets 503. Lowered at start to what the "
                    "process's open-file limit allows (RLIMIT_NOFILE less a reserve)."),
    cfg.IntOpt("workers", default=8, min=1, max=256,
               help="Threads that run API operations (the store and LIO calls block)."),
    cfg.IntOpt("max_queued_requests", default=64, min=0, max=10000,
               help="Operations that may wait for a free worker; more get 503 at once "
                    "with Retry-After, never a hang."),
    cfg.FloatOpt("header_timeout", default=10.0, min=0.5, max=600,
                 help="Seconds a connection has to deliver a complete request head, "
                      "from its opening or the end of the previous response. Counted "
                      "from the start, so bytes trickled one at a time do not extend it."),
    cfg.FloatOpt("body_timeout", default=30.0, min=0.5, max=600,
                 help="Seconds to receive a whole request body once its head arrived (408)."),
    cfg.FloatOpt("keepalive_timeout", default=15.0, min=0.1, max=600,
                 help="Seconds an idle HTTP/1.1 keep-alive connection stays open."),
    cfg.FloatOpt("tls_handshake_timeout", default=10.0, min=0.5, max=600,
                 help="Seconds a client has to complete the TLS handshake."),
    cfg.IntOpt("max_tls_handshakes", default=128, min=1, max=100000,
               help="Most TLS handshakes under way at once (each holds an SSL object "
                    "and its buffers); the others wait their turn, unread, within "
                    "tls_handshake_timeout. A connection that has sent nothing yet "
                    "holds none."),
    cfg.FloatOpt("unauthenticated_rate", default=20.0, min=0.0, max=100000,
                 help="Answers per second, all clients together, to requests without a "
                      "valid token (probes of /healthz and /metrics, refusals); the rest "
                      "wait their turn. Past 5 s of queue the answer is a 429, itself "
                      "held 5 s, doubled for each further 429 on the same connection up "
                      "to 60 s. Requests with the token are never paced. 0: no pacing."),
    cfg.FloatOpt("refused_log_rate", default=10.0, min=0.0, max=10000,
                 help="Log lines per second for refused requests (4xx) without a valid "
                      "token; the rest are counted and summed up in one line, so a flood "
                      "cannot drown the journal. Every served operation, and every "
                      "request with the token, is always logged."),
]

def check_api_options(conf: cfg.ConfigOpts) -> list[str]:
    """Refuse an [api] setting that cannot work or would expose the API
    (InvalidInput); return the warnings to log at start for risky settings
    that are allowed."""
    api = conf[GROUP]
    listen = parse_listen(api.listen)
    tls = _tls_pair(api.tls_cert_file, api.tls_key_file, listen)
    if api.token_file and not os.path.isabs(api.token_file):
        raise InvalidInput(f"[api] token_file {api.token_file!r} is a relative path: "
                           "give an absolute one")
    if api.auth_strategy == "noauth":
        check_noauth_listen(api.listen)
        return [f"[api] auth_strategy = noauth: any local user who can reach {listen} "
                "can call the API, as any user and project, without a token"]
    if isinstance(listen, TcpListen) and not listen.is_loopback and tls is None:
        if not api.allow_insecure_transport:
            raise InvalidInput(
                f"[api] listen = {listen} without TLS would send the API token in clear "
                "text: set [api] tls_cert_file and tls_key_file, listen on loopback or "
                "a unix: socket, or set [api] allow_insecure_transport = true if this "
                "network is trusted")
        return [f"[api] allow_insecure_transport = true: the API token crosses the "
                f"network to {listen} port {api.port} in clear text"]
    return []


def _tls_pair(cert: str | None, key: str | None, listen: Listen) -> tuple[str, str] | None:
    """(cert, key) when TLS is configured and loads, None when it is not set."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise InvalidInput("[api] tls_cert_file and tls_key_file go together: set both "
                           "or neither")
    if isinstance(listen, UnixListen):
        raise InvalidInput(f"[api] tls_cert_file is set but listen = {listen} is a Unix "
                           "socket, which is served without TLS: unset the tls_ options")
    check_tls_pair(cert, key)
    return cert, key


def check_tls_pair(cert: str, key: str) -> None:
    """The certificate and key load as a matching PEM pair, as the server
    will load them; the message names the file and the problem."""
    for option, path in (("tls_cert_file", cert), ("tls_key_file", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InvalidInput(f"[api] {option} {path} cannot be read: "
                               f"{exc.strerror}") from None

    def no_passphrase() -> bytes:
        # A passphrase would be asked for on a terminal the daemon has not got.
        # (ssl passes what the callback raises through as it is.)
        raise InvalidInput(f"[api] tls_key_file {key} is encrypted: the daemon needs "
                           "a key without a passphrase (0600)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        raise InvalidInput(f"[api] tls_cert_file {cert} and tls_key_file {key} are not "
                           "a PEM certificate and its private key "
                           f"({exc.reason or exc.library or 'unreadable'})") from None
