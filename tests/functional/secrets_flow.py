"""Secrets: a full flow at debug level with a canary token and the CHAP
secret the daemon generated, looked for everywhere a secret could leak: log
lines (daemon and host side), every process command line seen during the
flow, files, error bodies, configfs modes."""
from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
import uuid
from pathlib import Path

from iscsiattach.cli.client import Client
from iscsiattach.cli.host import ApiAdapter
from iscsiattach.host import brick
from iscsiattach.host.attach import HostSide
from iscsiattach.target.lio_layout import CONFIGFS
from tests.functional.conftest import PREFIX
from tests.functional.daemon import URL, Daemon, call
from tests.functional.iscsi import initiator_name

SEARCHED = ("/etc", "/tmp", "/var", "/run", "/root")
PRUNED = {".pyenv", ".cache", "cache", "apt", "dpkg", "site-packages", ".git"}


class CmdlineWatch:
    """Every distinct process command line on the machine, sampled
    continuously while the flow runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CmdlineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # Every 20 ms: a busy loop would starve the flow of the GIL, and an
        # iscsiadm run lasts far longer than that.
        while not self._stop.wait(0.02):
            for proc in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    line = proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if line:
                    self.seen.add(line)


class Capturing(ApiAdapter):
    """The host side's API, remembering the CHAP secret it was handed."""

    chap: list[str] = []

    def attachment_create(self, *args) -> dict:
        att = super().attachment_create(*args)
        self.chap.append(att["connection_info"]["auth_password"])
        return att


def files_containing(needles: list[bytes], roots, since: float) -> dict[str, int]:
    """path -> mode of every regular file (under 64 MiB) written since
    `since` that holds a needle. Only what changed can hold a new secret;
    reading all of a 9p root under TCG would take many minutes."""
    hits = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in PRUNED and
                       not os.path.ismount(os.path.join(dirpath, d))]
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20 or \
                            max(st.st_mtime, st.st_ctime) < since:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    hits[path] = stat.S_IMODE(st.st_mode)
    return hits


def test_no_secret_leaks_anywhere_during_a_full_flow(tmp_path, scratch_fs, backend, caplog):
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    token = "canary" + secrets.token_hex(20)
    fd = os.open(state / "api-token", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, token.encode())
    os.close(fd)
    d = Daemon(state, scratch_fs / "secret-volumes")
    brick.setup(str(tmp_path / "host" / "locks"))
    api = Capturing(Client(URL, token, "3.54"))
    side = HostSide(api, brick, str(tmp_path / "host"))
    bodies = []
    t0 = time.time() - 2
    with CmdlineWatch() as watch:
        d.start(timeout=300)
        vid = call("POST", "/volumes", {"volume": {"size": 1}}, token)[1]["volume"]["id"]
        got = side.attach(vid)
        chap = api.chap[-1]
        # Refusals while the secret is live: none may echo it.
        bodies += [call("POST", "/attachments", {"attachment": {
            "volume_uuid": vid, "connector": {"initiator": "iqn.2004-10.com.example:x"}}},
            token), call("GET", f"/attachments/{uuid.uuid4()}", token=token),
            call("POST", "/attachments", {"attachment": {"volume_uuid": vid,
                                                         "connector": "bogus"}}, token),
            call("GET", "/volumes", token=token[:-1])]
        acl_auth = CONFIGFS / "iscsi" / f"{PREFIX}volume-{vid}" / "tpgt_1" / "acls" / \
            initiator_name() / "auth"
        modes = {name: stat.S_IMODE(os.stat(acl_auth / name).st_mode)
                 for name in ("password", "password_mutual")}
        live_files = files_containing([chap.encode(), token.encode()],
                                      [*SEARCHED, str(tmp_path), str(scratch_fs)], t0)
        side.detach(got.attachment_id)
        assert call("DELETE", f"/volumes/{vid}", token=token)[0] == 202
        d.stop()
    canaries = [token, chap]
    assert [s for s, _ in bodies] == [409, 404, 400, 401]
    assert not [b for _, b in bodies if any(c in str(b) for c in canaries)]

    log = d.log_path.read_text()
    assert "DEBUG" in log and not [c for c in canaries if c in log]
    assert "iscsiadm" in caplog.text and not [c for c in canaries if c in caplog.text]

    assert any("iscsiadm" in line for line in watch.seen), "the sampler saw no iscsiadm"
    assert not [line for line in watch.seen if any(c in line for c in canaries)]

    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    # While attached, the secrets live only in 0600 files: the daemon's token
    # and database, and the initiator's node record.
    assert all(mode == 0o600 for mode in live_files.values()), live_files
    assert set(live_files) <= {str(state / "api-token"), *map(str, state.glob("*.sqlite*")),
                               *[p for p in live_files if p.startswith("/etc/iscsi/nodes/")]}
    assert any(p.startswith("/etc/iscsi/nodes/") for p in live_files)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    # Detached: the node record with the secret is gone.
    left = files_containing([chap.encode()], ["/etc", "/tmp", "/run", str(tmp_path / "host")],
                            t0)
    assert set(left) <= set(map(str, state.glob("*.sqlite*"))), left
