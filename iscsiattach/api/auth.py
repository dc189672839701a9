"""API authentication: a token from a 0600 file, or Cinder's noauth on loopback.

``token``: the daemon reads its token from ``token_file`` (making one with
``secrets`` on first start, written atomically 0600 in a 0700 directory; an
existing one must be a regular file of the daemon's user, mode 0600, not a
symlink) and compares ``X-Auth-Token`` with it in constant time. ``noauth``: Cinder's
development mode, accepting ``user:project`` tokens; refused unless the API
listens only on loopback or a Unix socket.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from iscsiattach.api.listen import UnixListen, parse_listen
from iscsiattach.exception import InvalidInput
from iscsiattach.secret import Secret

TOKEN_BYTES = 32
MAX_TOKEN_FILE = 4096          # a token is one short line; more is not a token file
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
    """The token in ``p``, which must be the daemon's own private regular file.

    Opened without following a symlink, then checked on the open descriptor
    (owner, type, mode), so the file checked is the file read: a link or a
    file someone else can write could hand the daemon a token they know.
    Messages name the file and the problem, never the content.
    """
    try:
        # O_NONBLOCK: a FIFO planted there must not hang the start.
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"token file {p} is a symbolic link: the token file "
                               "must be the file itself") from None
        if exc.errno == errno.ENOENT:
            raise
        raise InvalidInput(f"cannot read token file {p}: {exc.strerror}") from None
    try:
        _check_token_file(p, os.fstat(fd))
        data = _read_at_most(fd, MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    try:
        value = data.decode("ascii").strip()
    except UnicodeDecodeError:
        value = ""
    if len(value) < 16 or len(data) > MAX_TOKEN_FILE:
        raise InvalidInput(f"token file {p} holds no usable token (16 characters or "
                           f"more, at most {MAX_TOKEN_FILE} bytes of ASCII)")
    return Secret(value)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check_token_file(p: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"token file {p} is not a regular file")
    if st.st_uid != os.geteuid():
        raise InvalidInput(f"token file {p} is owned by uid {st.st_uid}, not by the "
                           f"daemon's user (uid {os.geteuid()}); chown it")
    if st.st_mode & 0o077:
        raise InvalidInput(f"token file {p} is readable by others (mode "
                           f"{oct(st.st_mode & 0o777)}); make it 0600")


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
    raise InvalidInput(f"[api] auth_strategy noauth needs a loopback address or a unix: "
                       f"socket to listen on, not {listen!r}")
