"""API token file and noauth rules."""
from __future__ import annotations

import os
import stat

import pytest

from iscsiattach.api.auth import (
    check_noauth_listen,
    load_or_create_token,
    noauth_identity,
    token_matches,
)
from iscsiattach.exception import InvalidInput


def test_token_created_once_0600_and_reused(tmp_path):
    path = tmp_path / "secrets" / "api-token"
    token = load_or_create_token(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert len(token) >= 40 and load_or_create_token(str(path)) == token
    assert token.reveal() not in repr(token)
    assert [p.name for p in path.parent.iterdir()] == ["api-token"]   # no temp file left


def test_world_readable_or_empty_token_file_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("x" * 40)
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInput, match="readable by others"):
        load_or_create_token(str(path))
    os.chmod(path, 0o600)
    path.write_text("short")
    with pytest.raises(InvalidInput, match="no usable token"):
        load_or_create_token(str(path))


def test_token_comparison(tmp_path):
    token = load_or_create_token(str(tmp_path / "t"))
    assert token_matches(token, token.reveal())
    assert not token_matches(token, None)
    assert not token_matches(token, token.reveal()[:-1])
    assert not token_matches(token, "")


def test_noauth_tokens_and_listen_rule():
    assert noauth_identity("admin:demo") == ("admin", "demo")
    assert noauth_identity("admin") == ("admin", "admin")
    assert noauth_identity(None) is None and noauth_identity("a b") is None
    for ok in ("127.0.0.1", "::1", "[::1]", "unix:/run/iscsiattach/api.sock"):
        check_noauth_listen(ok)
    for bad in ("0.0.0.0", "10.0.0.5", "::", "storage.example"):
        with pytest.raises(InvalidInput):
            check_noauth_listen(bad)


# -- the token file is the daemon's own private regular file ---------------------

TOKEN = "t" * 40


def _refused(path) -> str:
    with pytest.raises(InvalidInput) as err:
        load_or_create_token(str(path))
    assert TOKEN not in str(err.value)
    return str(err.value)


def test_token_file_through_a_symlink_refused_and_not_followed(tmp_path):
    target = tmp_path / "real-token"
    target.write_text(TOKEN)
    os.chmod(target, 0o600)
    link = tmp_path / "api-token"
    link.symlink_to(target)
    assert _refused(link) == (f"token file {link} is a symbolic link: the token file "
                              "must be the file itself")
    dangling = tmp_path / "dangling-token"
    dangling.symlink_to(tmp_path / "nothing")
    assert "is a symbolic link" in _refused(dangling)
    assert not (tmp_path / "nothing").exists()     # no token written through the link
    assert target.read_text() == TOKEN


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_token_file_that_is_not_a_regular_file_refused(tmp_path, kind):
    path = tmp_path / "api-token"
    if kind == "directory":
        path.mkdir(mode=0o700)
    else:
        os.mkfifo(path, 0o600)          # opening it must not hang the start
    assert _refused(path) == f"token file {path} is not a regular file"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_token_file_of_another_user_refused(tmp_path):
    path = tmp_path / "api-token"
    path.write_text(TOKEN)
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    assert _refused(path) == (f"token file {path} is owned by uid 65534, not by the "
                              "daemon's user (uid 0); chown it")


def test_token_file_mode_checked_on_the_open_file(tmp_path):
    path = tmp_path / "api-token"
    path.write_text(TOKEN)
    os.chmod(path, 0o640)
    assert _refused(path) == (f"token file {path} is readable by others (mode 0o640); "
                              "make it 0600")
    os.chmod(path, 0o600)
    assert load_or_create_token(str(path)).reveal() == TOKEN


def test_oversized_or_binary_token_file_refused(tmp_path):
    path = tmp_path / "api-token"
    for content in (b"t" * 5000, b"\xff" * 40):
        path.write_bytes(content)
        os.chmod(path, 0o600)
        assert _refused(path) == (f"token file {path} holds no usable token (16 "
                                  "characters or more, at most 4096 bytes of ASCII)")
