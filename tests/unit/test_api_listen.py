"""[api] listen parsed into a typed value, and a Unix socket path made ready
for binding without ever removing something that is not a stale socket."""
from __future__ import annotations

import os
import socket

import pytest

from iscsiattach.api.listen import (
    MAX_UNIX_PATH,
    TcpListen,
    UnixListen,
    parse_listen,
    prepare_unix_socket,
)
from iscsiattach.exception import InvalidInput


@pytest.mark.parametrize("text, want, loopback", [
    ("127.0.0.1", TcpListen("127.0.0.1"), True),
    (" 127.0.0.2 ", TcpListen("127.0.0.2"), True),
    ("::1", TcpListen("::1"), True),
    ("[::1]", TcpListen("::1"), True),
    ("0.0.0.0", TcpListen("0.0.0.0"), False),
    ("[::]", TcpListen("::"), False),
    ("10.0.0.5", TcpListen("10.0.0.5"), False),
    ("fd00::5", TcpListen("fd00::5"), False),
])
def test_tcp_addresses(text, want, loopback):
    got = parse_listen(text)
    assert got == want and got.is_loopback is loopback
    assert str(got) == (f"[{want.host}]" if ":" in want.host else want.host)


def test_unix_socket():
    got = parse_listen("unix:/run/iscsiattach/api.sock")
    assert got == UnixListen("/run/iscsiattach/api.sock")
    assert str(got) == "unix:/run/iscsiattach/api.sock"


@pytest.mark.parametrize("text, reason", [
    ("unix:", "[api] listen 'unix:' names no socket path: give unix:/absolute/path"),
    ("unix:api.sock", "[api] listen unix:api.sock is a relative path: give an absolute one"),
    ("unix:./run/api.sock",
     "[api] listen unix:./run/api.sock is a relative path: give an absolute one"),
    ("", "[api] listen is empty: give an IP address such as 127.0.0.1 or "
         "unix:/run/iscsiattach/api.sock"),
    ("[]", "[api] listen is empty: give an IP address such as 127.0.0.1 or "
           "unix:/run/iscsiattach/api.sock"),
    ("localhost", "[api] listen 'localhost' is not an IP address or unix:/absolute/path"),
    ("10.0.0.300", "[api] listen '10.0.0.300' is not an IP address or unix:/absolute/path"),
    ("[10.0.0.5]", "[api] listen '[10.0.0.5]': brackets are for IPv6 addresses only"),
    ("[::1]:8776", "[api] listen '[::1]:8776' is not an IP address or unix:/absolute/path"),
])
def test_refused(text, reason):
    with pytest.raises(InvalidInput) as err:
        parse_listen(text)
    assert str(err.value) == reason


def test_unix_path_longer_than_sun_path_refused():
    path = "/" + "a" * MAX_UNIX_PATH
    with pytest.raises(InvalidInput, match="longer than the 107 bytes"):
        parse_listen("unix:" + path)
    assert parse_listen("unix:" + path[:-1]) == UnixListen(path[:-1])


# -- prepare_unix_socket -------------------------------------------------------

def _bound(path, listening: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listening:
        sock.listen(1)
    return sock


def test_nothing_there_is_ready(tmp_path):
    prepare_unix_socket(str(tmp_path / "api.sock"))
    assert list(tmp_path.iterdir()) == []


def test_stale_socket_is_removed(tmp_path):
    path = tmp_path / "api.sock"
    _bound(path, listening=False).close()     # what a killed daemon leaves
    assert path.is_socket()
    prepare_unix_socket(str(path))
    assert not os.path.lexists(path)


def test_socket_served_by_another_process_is_refused_and_kept(tmp_path):
    path = tmp_path / "api.sock"
    with _bound(path, listening=True):
        with pytest.raises(InvalidInput) as err:
            prepare_unix_socket(str(path))
        assert str(err.value) == (f"cannot listen on unix:{path}: another process is "
                                  "serving on that socket")
        assert path.is_socket()


@pytest.mark.parametrize("kind", ["regular file", "directory", "symbolic link",
                                  "symbolic link to a stale socket"])
def test_anything_but_a_socket_is_refused_and_never_removed(tmp_path, kind):
    path = tmp_path / "api.sock"
    if kind == "regular file":
        path.write_text("precious")
    elif kind == "directory":
        path.mkdir()
    elif kind == "symbolic link":
        (tmp_path / "data").write_text("precious")
        path.symlink_to(tmp_path / "data")
    else:
        _bound(tmp_path / "stale.sock", listening=False).close()
        path.symlink_to(tmp_path / "stale.sock")
        kind = "symbolic link"
    with pytest.raises(InvalidInput) as err:
        prepare_unix_socket(str(path))
    assert str(err.value) == (f"cannot listen on unix:{path}: a {kind} is there (left "
                              "alone; remove it or choose another path)")
    assert os.path.lexists(path)
    if path.is_file():
        assert path.read_text() == "precious"
    assert all(os.path.lexists(p) for p in tmp_path.iterdir())
