"""A real iscsiattachd process for functional tests, and a tiny HTTP client."""
from __future__ import annotations

from pathlib import Path

from iscsiattach.cli.client import Client, CliError
from tests.functional.conftest import PREFIX
from tests.support import daemon as support
from tests.support.daemon import make_tls_cert

PORT = 18776
URL = f"http://127.0.0.1:{PORT}/v3"

__all__ = ["PORT", "URL", "Daemon", "call", "make_tls_cert"]


class Daemon(support.Daemon):
    """iscsiattachd on 127.0.0.1:PORT with the file backend over
    ``volumes``, the test prefix, debug logs (``debug``: false logs as a
    production daemon does) and no periodic reconcile; ``extra`` config
    lines (e.g. "[api]\\nport = ...") are appended to its config file.
    ``tls``: (certificate, key) PEM files (see make_tls_cert): the API serves
    HTTPS and ``url`` says https. The other options: support.Daemon's."""

    def __init__(self, state: Path, volumes: Path, extra: str = "",
                 env: dict[str, str] | None = None, forkserver=None,
                 tls: tuple[Path, Path] | None = None, debug: bool = True,
                 nofile: int | None = None, command: list[str] | None = None) -> None:
        config = support.Config(state, PORT, support.file_backend(volumes), prefix=PREFIX,
                                debug=debug, tls=tls, interval=3600, extra=extra)
        super().__init__(config, env=env, forkserver=forkserver, nofile=nofile,
                         command=command)


def call(method, path, body=None, token=None, version="3.54", url=URL):
    """(status, JSON body) of one API request. A daemon that is down raises
    ConnectionError (an OSError), which load clients catch to retry."""
    try:
        return Client(url, token, version, timeout=120).call(method, path, body)
    except CliError as exc:
        raise ConnectionError(str(exc)) from None
