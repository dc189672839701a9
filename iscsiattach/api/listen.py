"""Where the API listens: parsed once; a Unix socket path made ready safely.
(Interim version; superseded by the start-time checks branch.)"""
from __future__ import annotations

import os
from dataclasses import dataclass

from iscsiattach.exception import InvalidInput


@dataclass(frozen=True)
class Listen:
    host: str = ""
    unix_path: str | None = None


def parse_listen(value: str) -> Listen:
    if value.startswith("unix:"):
        path = value[5:]
        if not path.startswith("/"):
            raise InvalidInput(f"listen = {value!r}: a unix: socket needs an absolute path")
        return Listen(unix_path=path)
    return Listen(host=value.strip("[]"))


def prepare_unix_socket(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
