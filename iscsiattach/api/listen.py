"""Where the API listens: ``[api] listen`` parsed once, and a Unix socket
path made ready for binding.

``listen`` is an IP address (IPv4, or IPv6 with or without brackets) or
``unix:/absolute/path``. Host names are refused: the option names an address,
and a name that resolves differently tomorrow must not move the API onto
another network.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass

from iscsiattach.exception import InvalidInput

UNIX_PREFIX = "unix:"
# sockaddr_un.sun_path is 108 bytes on Linux, one of them the trailing NUL.
MAX_UNIX_PATH = 107
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class UnixListen:
    """A Unix socket at an absolute path."""
    path: str

    def __str__(self) -> str:
        return UNIX_PREFIX + self.path


@dataclass(frozen=True)
class TcpListen:
    """An IP address to bind (brackets removed; IPv6 may carry a %zone)."""
    host: str

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        # An unspecified address (0.0.0.0, ::) listens on every interface.
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]" if self.is_ipv6 else self.host


Listen = UnixListen | TcpListen


def parse_listen(value: str) -> Listen:
    """``[api] listen`` as a typed value; InvalidInput says what is wrong."""
    text = value.strip()
    if text.startswith(UNIX_PREFIX):
        return UnixListen(_unix_path(text[len(UNIX_PREFIX):]))
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not host:
        # Python binds "" to every interface: never the meaning of an empty value.
        raise InvalidInput("[api] listen is empty: give an IP address such as 127.0.0.1 "
                           "or unix:/run/iscsiattach/api.sock")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInput(f"[api] listen {value!r} is not an IP address or "
                           "unix:/absolute/path") from None
    if host != text and address.version != 6:
        raise InvalidInput(f"[api] listen {value!r}: brackets are for IPv6 addresses only")
    return TcpListen(host)


def _unix_path(path: str) -> str:
    if not path:
        raise InvalidInput("[api] listen 'unix:' names no socket path: give "
                           "unix:/absolute/path")
    if not os.path.isabs(path):
        # Relative to whatever directory the daemon happens to start in.
        raise InvalidInput(f"[api] listen unix:{path} is a relative path: give an "
                           "absolute one")
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise InvalidInput(f"[api] listen unix:{path} is longer than the "
                           f"{MAX_UNIX_PATH} bytes a Unix socket path may have")
    return path


def prepare_unix_socket(path: str) -> None:
    """Make ``path`` free for binding a Unix socket, or say why it is not.

    Nothing there: ready. A socket nobody serves (connecting is refused): a
    stale one from an earlier run, removed. A socket that answers: another
    process serves there, refused. Anything else (file, directory, symlink):
    refused and left alone, since removing it could destroy someone's data.
    Raises InvalidInput.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidInput(f"cannot listen on unix:{path}: a {_kind(st.st_mode)} is "
                           "there (left alone; remove it or choose another path)")
    if _socket_answers(path):
        raise InvalidInput(f"cannot listen on unix:{path}: another process is serving "
                           "on that socket")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass                            # removed meanwhile: free all the same


def _socket_answers(path: str) -> bool:
    """True if a process accepts connections on the socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)     # a full backlog must not hang the start
    try:
        probe.connect(path)
        return True
    except ConnectionRefusedError:
        return False                    # nobody listens: stale
    except OSError as exc:
        if exc.errno == errno.ENOENT:   # vanished between lstat and connect
            return False
        # EACCES, EAGAIN (backlog full: someone is there), ...: not provably
        # stale, so never removed.
        raise InvalidInput(f"cannot listen on unix:{path}: cannot tell whether the "
                           f"socket there is in use ({exc.strerror or exc})") from None
    finally:
        probe.close()


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "regular file"
    return "non-socket file"
