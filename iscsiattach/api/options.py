"""Options of the REST API, group [api]."""
from __future__ import annotations

from oslo_config import cfg

GROUP = "api"

API_OPTS = [
    cfg.StrOpt("listen", default="127.0.0.1",
               help="Address the API listens on (IPv4 or IPv6), or unix:/path for a "
                    "Unix socket (created 0600)."),
    cfg.PortOpt("port", default=8776, help="TCP port of the API (Cinder's is 8776)."),
    cfg.StrOpt("auth_strategy", default="token", choices=["token", "noauth"],
               help="token: X-Auth-Token must equal the secret in token_file. noauth: "
                    "Cinder's user:project tokens, refused unless listening on loopback "
                    "or a Unix socket."),
    cfg.StrOpt("token_file", default=None,
               help="File holding the API token (0600); made on first start. Default: "
                    "<state_path>/api-token."),
    cfg.StrOpt("tls_cert_file", default=None,
               help="PEM certificate: serve HTTPS when set (with tls_key_file)."),
    cfg.StrOpt("tls_key_file", default=None, help="PEM private key of tls_cert_file."),
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
    cfg.FloatOpt("refused_log_rate", default=10.0, min=0.0, max=10000,
                 help="Log lines per second for refused requests (4xx); the rest are "
                      "counted and summed up in one line, so a flood cannot drown the "
                      "journal. Every served operation is always logged."),
]
