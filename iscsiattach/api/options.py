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
