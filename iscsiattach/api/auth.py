"""API authentication: a token from a 0600 file, or Cinder's noauth on loopback.

``token``: the daemon reads its token from ``token_file`` (making one with
``secrets`` on first start, written atomically 0600 in a 0700 directory) and
compares ``X-Auth-Token`` with it in constant time. ``noauth``: Cinder's
development mode, accepting ``user:project`` tokens; refused unless the API
listens only on loopback or a Unix socket.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from iscsiattach.api.listen import UnixListen, parse_listen
from iscsiattach.exception import InvalidInput
from iscsiattach.secret import Secret

TOKEN_BYTES = 32
_NOAUTH_TOKEN = re.compile(r"[A-Za-z0-9_.@-]{1,255}(:[A-Za-z0-9_.@-]{1,255})?")


def load_or_create_token(path: str) -> Secret:
    """The API token in ``path``; a new random one if the file does not exist."""
    p = Path(path)
    try:
        return _read_token(p)
    except FileNotFoundError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = Secret.generate(TOKEN_BYTES)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".token-")   # 0600 by mkstemp
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token.reveal() + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link, not rename: if another process made the token first, keep theirs.
        try:
            os.link(tmp, p)
        except FileExistsError:
            return _read_token(p)
    finally:
        os.unlink(tmp)
    return token


def _read_token(p: Path) -> Secret:
    st = p.stat()
    if st.st_mode & 0o077:
        raise InvalidInput(f"token file {p} is readable by others (mode "
                           f"{oct(st.st_mode & 0o777)}); make it 0600")
    value = p.read_text().strip()
    if len(value) < 16:
        raise InvalidInput(f"token file {p} holds no usable token (16 characters or more)")
    return Secret(value)


def token_matches(expected: Secret, presented: str | None) -> bool:
    """Constant-time comparison; a missing header never matches."""
    return presented is not None and Secret(presented) == expected


def noauth_identity(presented: str | None) -> tuple[str, str] | None:
    """(user, project) from a noauth token ``user:project`` (or ``user``)."""
    if presented is None or not _NOAUTH_TOKEN.fullmatch(presented):
        return None
    user, _, project = presented.partition(":")
    return user, project or user


def check_noauth_listen(listen: str) -> None:
    """noauth only where nobody else can reach the API."""
    where = parse_listen(listen)
    if isinstance(where, UnixListen) or where.is_loopback:
        return
    raise InvalidInput(f"auth_strategy noauth needs a loopback address or a unix: socket "
                       f"to listen on, not {listen!r}")
