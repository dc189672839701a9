"""Secrets: a full flow at debug level with a canary token and the CHAP
secret the daemon generated, looked for everywhere a secret could leak: log
lines (daemon and host side), every process command line seen during the
flow, files, error bodies, configfs modes."""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import time
import uuid
from fnmatch import fnmatch
from pathlib import Path

from iscsiattach.cli.client import Client
from iscsiattach.cli.host import ApiAdapter
from iscsiattach.host import brick
from iscsiattach.host.attach import HostSide
from iscsiattach.targets.lio.configfs import CONFIGFS
from tests.functional.conftest import PREFIX
from tests.functional.daemon import URL, Daemon, call
from tests.functional.iscsi import initiator_name
from tests.functional.sampler import Sampler


class CmdlineWatch(Sampler):
    """Every distinct process command line on the machine, sampled
    continuously while the flow runs (an iscsiadm run lasts far longer than
    the 20 ms step)."""

    interval = 0.02

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def sample(self) -> None:
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


# Filesystems a process can write to; the guest's / is the host's, shared
# read-only, so only these can hold anything written during the flow.
WRITABLE_TYPES = {"tmpfs", "ext4", "ext3", "ext2", "xfs", "btrfs", "9p", "virtiofs", "vfat"}


def writable_mounts() -> tuple[list[str], dict[str, str]]:
    """(read-write mount points, overlay upper dir -> the path it appears
    at). An overlay's writes land in its upper dir (virtme keeps those under
    /run/tmp), so walking the upper dirs finds them without reading the
    9p lower layers, which under TCG takes many minutes."""
    roots, uppers = [], {}
    for line in open("/proc/self/mountinfo"):
        left, right = line.split(" - ")
        mount_point, mount_opts = left.split()[4], left.split()[5]
        fstype, _source, super_opts = right.split()[:3]
        mount_point = mount_point.replace("\\040", " ")
        if fstype == "overlay":
            upper = re.search(r"(?:^|,)upperdir=([^,]+)", super_opts)
            if upper:
                uppers[upper.group(1)] = mount_point
        elif fstype in WRITABLE_TYPES and "rw" in mount_opts.split(","):
            roots.append(mount_point)
    assert "/" not in roots, "the root filesystem is writable: this suite wants the VM"
    return roots, uppers


def files_containing(needles: list[bytes], since: float) -> dict[str, int]:
    """path -> mode of every regular file (under 64 MiB) on a writable
    filesystem, written since `since`, that holds a needle. A file in an
    overlay's upper dir is reported under the path it has in the overlay."""
    roots, uppers = writable_mounts()
    hits = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(dirpath, d))]
            for name in files:
                path = os.path.join(dirpath, name)
                mode = _mode_if_holding(path, needles, since)
                if mode is not None:
                    hits[_overlay_path(path, uppers)] = mode
    return hits


def _mode_if_holding(path: str, needles: list[bytes], since: float) -> int | None:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20 or \
                max(st.st_mtime, st.st_ctime) < since:
            return None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if any(n in data for n in needles) else None


def _overlay_path(path: str, uppers: dict[str, str]) -> str:
    for upper, mount_point in uppers.items():
        if path == upper or path.startswith(upper + "/"):
            return mount_point.rstrip("/") + path[len(upper):]
    return path


def test_no_secret_leaks_anywhere_during_a_full_flow(tmp_path, scratch_fs, backend, caplog,
                                                     results_dir):
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
        live_files = files_containing([chap.encode(), token.encode()], t0)
        side.detach(got.attachment_id)
        assert call("DELETE", f"/volumes/{vid}", token=token)[0] == 202
        d.stop()
    canaries = [token, chap]
    (results_dir / "secrets-flow.json").write_text(json.dumps(
        {"command_lines_seen": len(watch.seen), "log_bytes": d.log_path.stat().st_size,
         "files_holding_a_canary_while_attached": sorted(live_files),
         "writable_mounts_walked": writable_mounts()[0]}, indent=1))
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
    # (The database's WAL was there while the daemon ran: match by name.)
    in_db = [p for p in live_files if fnmatch(p, f"{state}/*.sqlite*")]
    assert set(live_files) <= {str(state / "api-token"), *in_db,
                               *[p for p in live_files if p.startswith("/etc/iscsi/nodes/")]}
    assert any(p.startswith("/etc/iscsi/nodes/") for p in live_files)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    # Detached: the node record with the secret is gone.
    left = files_containing([chap.encode()], t0)
    assert not [p for p in left if not fnmatch(p, f"{state}/*.sqlite*")], left
