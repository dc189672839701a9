"""API token file and noauth rules."""
from __future__ import annotations

import os
import stat

import pytest

from iscsiattach.api.auth import (check_noauth_listen, load_or_create_token,
                                  noauth_identity, token_matches)
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
