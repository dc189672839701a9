"""iscsiattachd as a real process over real LIO, driven over HTTP."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from iscsiattach.model import Portal
from iscsiattach.targets.lio import configfs
from tests.functional.conftest import PREFIX
from tests.functional.daemon import URL, Daemon, call
from tests.functional.iscsi import NO_PORTAL, NO_TARGET, Node, initiator_name, write_and_read_back
from tests.support.wait import wait_for


@pytest.fixture
def daemon(tmp_path, scratch_fs, backend, fork_server):     # backend: cleans our prefix up
    d = Daemon(tmp_path / "state", scratch_fs / "daemon-volumes", forkserver=fork_server)
    d.start()
    yield d
    d.stop()


def test_full_flow_over_http_with_a_real_login(daemon):
    tok = daemon.token
    assert (os.stat(daemon.state / "api-token").st_mode & 0o777) == 0o600
    status, body = call("POST", "/volumes", {"volume": {"size": 1, "name": "http"}}, tok)
    assert status == 202
    vid = body["volume"]["id"]
    connector = {"initiator": initiator_name(), "ip": "127.0.0.1", "host": "guest",
                 "platform": "x86_64", "os_type": "linux2", "multipath": False}
    status, body = call("POST", "/attachments", {"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()), "connector": connector}}, tok)
    assert status == 200
    att, info = body["attachment"]["id"], body["attachment"]["connection_info"]
    node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
    node.setup(info["auth_username"], info["auth_password"])
    assert node.login_retrying().returncode == 0
    dev = node.device()
    assert write_and_read_back(dev, 2 << 20)
    assert call("POST", f"/attachments/{att}/action", {"os-complete": None}, tok)[0] == 204

    # Stopping the daemon leaves the export up: the session keeps working.
    daemon.stop()
    assert write_and_read_back(dev, 1 << 20)
    daemon.start()
    assert call("GET", f"/volumes/{vid}", token=tok)[1]["volume"]["status"] == "in-use"

    node.logout()
    assert call("DELETE", f"/attachments/{att}", token=tok)[0] == 200
    node.assert_refused(NO_TARGET, NO_PORTAL)       # the target is gone
    node.delete()
    assert call("DELETE", f"/volumes/{vid}", token=tok)[0] == 202
    log = (daemon.state.parent / "daemon.log").read_text()
    assert "DEBUG" in log, "the daemon should have run at debug level"
    assert info["auth_password"] not in log and tok not in log
    # One line per operation, naming the request and both ids.
    connect = [ln for ln in log.splitlines() if f"attachment {att} connected volume {vid}" in ln]
    assert connect and "[req-" in connect[0]


def test_requests_without_or_with_a_wrong_token_are_refused(daemon):
    for token in (None, "wrong", daemon.token[:-1]):
        status, body = call("POST", "/volumes", {"volume": {"size": 1}}, token)
        assert status == 401 and "unauthorized" in body
    assert call("GET", "/volumes", token=daemon.token)[1] == {"volumes": []}


def test_kill_9_during_a_burst_then_restart_state_and_lio_agree(daemon):
    """Kill the daemon hard while clients create, connect and delete; after a
    restart the store and LIO agree and every client retry converges."""
    import threading

    from iscsiattach.attachments.wiring import lock_dir, wire_services
    from iscsiattach.targets.lio import LioBackend
    from iscsiattach.volumes.file import FileBackend

    tok = daemon.token
    vids = [call("POST", "/volumes", {"volume": {"size": 1, "multiattach": True}}, tok)[1]
            ["volume"]["id"] for _ in range(3)]
    stop = threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            i += 1
            iqn = f"iqn.2004-10.com.example:burst-{n}-{i}"
            try:
                status, body = call("POST", "/attachments", {"attachment": {
                    "volume_uuid": vids[i % 3], "connector": {"initiator": iqn}}}, tok)
                if status == 200 and i % 2:
                    call("DELETE", f"/attachments/{body['attachment']['id']}", token=tok)
            except OSError:
                time.sleep(0.2)       # the daemon is down: a client retries later
    workers = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    time.sleep(8)
    daemon.proc.kill()                  # kill -9, mid-operation
    daemon.proc.wait()
    stop.set()
    for w in workers:
        w.join(120)
    daemon.start()                      # first reconcile repairs before it serves

    # Every client retry converges: delete every attachment there is.
    status, body = call("GET", "/attachments", token=tok)
    assert status == 200
    for att in body["attachments"]:
        assert call("DELETE", f"/attachments/{att['id']}", token=tok)[0] == 200
    daemon.stop()
    # The store and LIO agree, checked from outside the daemon.
    lio = LioBackend(prefix=PREFIX, lock_path=lock_dir(str(daemon.state)))
    svc = wire_services(str(daemon.state), lio, FileBackend(str(daemon.state.parent / "x")),
                        (Portal("127.0.0.1"),))
    for vid in vids:
        vol = svc.store.volume(vid)
        assert vol.status == "available", vol
        assert svc.converger.drift(vol) == []
    assert [v for v in lio.list_exports() if v in vids] == []
    daemon.start()


def test_every_devref_command_through_the_cli_with_a_real_login(daemon):
    """The CLI as an operator runs it; the login uses the JSON it printed."""
    env = {**os.environ, "ISCSIATTACH_URL": URL,
           "ISCSIATTACH_TOKEN_FILE": str(daemon.state / "api-token")}
    exe = str(Path(sys.executable).with_name("iscsiattach"))

    def cli(*args, ok=True):
        res = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)
        assert (res.returncode == 0) == ok, res.stderr
        return res.stdout

    vid = json.loads(cli("--format", "json", "volume-create", "1", "--name", "cli"))["id"]
    assert "cli" in cli("volume-list") and vid in cli("volume-show", vid)
    inst = str(uuid.uuid4())
    reserved = json.loads(cli("--format", "json", "attachment-create", vid, inst))
    assert reserved["status"] == "reserved"
    att = reserved["id"]
    table = cli("attachment-update", att, "--initiator", initiator_name(), "--ip", "127.0.0.1")
    assert "| auth_password      | ***" in table
    info = json.loads(cli("--format", "json", "--show-secrets", "attachment-show", att))
    assert info["connection_info"] == {}            # the secret is served on connect only
    info = json.loads(cli("--format", "json", "--show-secrets", "attachment-update", att,
                          "--initiator", initiator_name()))["connection_info"]
    node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
    node.setup(info["auth_username"], info["auth_password"])
    assert node.login_retrying().returncode == 0
    assert write_and_read_back(node.device(), 1 << 20)
    cli("attachment-complete", att)
    assert "attached" in cli("attachment-list", "--volume-id", vid)
    err = subprocess.run([exe, "volume-delete", vid], capture_output=True, text=True, env=env)
    assert err.returncode == 1 and err.stderr.startswith("iscsiattach: error: ")
    node.logout()
    cli("attachment-delete", att)
    node.assert_refused(NO_TARGET, NO_PORTAL)
    node.delete()
    cli("volume-extend", vid, "2")
    assert '"size": 2' in cli("--format", "json", "volume-show", vid)
    cli("volume-delete", vid)
    assert "ready" in cli("status")


def test_host_attach_write_detach_attach_read_back(daemon, tmp_path):
    """iscsiattach attach / detach through os-brick, the device confirmed."""
    env = {**os.environ, "ISCSIATTACH_URL": URL,
           "ISCSIATTACH_TOKEN_FILE": str(daemon.state / "api-token"),
           "ISCSIATTACH_HOST_STATE": str(tmp_path / "host")}
    exe = str(Path(sys.executable).with_name("iscsiattach"))

    def cli(*args):
        res = subprocess.run([exe, "--format", "json", *args], capture_output=True, text=True,
                             env=env, timeout=600)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout) if res.stdout.strip() else None

    vid = cli("volume-create", "1")["id"]
    first = cli("attach", vid)
    dev = first["device"]
    assert first["serial"] == vid and dev.startswith("/dev/sd")
    payload = os.urandom(1 << 20)
    fd = os.open(dev, os.O_WRONLY)
    os.pwrite(fd, payload, 4096)
    os.fsync(fd)
    os.close(fd)
    assert cli("detach", vid)["detached"] == [first["attachment_id"]]
    assert cli("attach-list" if False else "attachment-list", "--volume-id", vid) == []
    second = cli("attach", vid, "--mode", "ro")
    fd = os.open(second["device"], os.O_RDONLY | os.O_DIRECT)
    buf = __import__("mmap").mmap(-1, 1 << 20)
    os.preadv(fd, [buf], 4096)
    os.close(fd)
    assert bytes(buf) == payload
    cli("detach", second["attachment_id"])
    cli("volume-delete", vid)


@pytest.fixture
def periodic_daemon(tmp_path, scratch_fs, backend, fork_server):
    # Full comparisons so rare that each run checks the outline only.
    d = Daemon(tmp_path / "state", scratch_fs / "daemon-volumes",
               "[reconciler]\ninterval = 2\nfull_check_interval = 100000000\n",
               forkserver=fork_server)
    d.start()
    yield d
    d.stop()


PASS_RE = re.compile(r"reconcile: (\d+) volumes, (\d+) drift, (\d+) repaired.* "
                     r"(\d+) compared in full")


def _passes_since(d, offset: int) -> list[re.Match]:
    with open(d.log_path) as f:
        f.seek(offset)
        return [m for m in map(PASS_RE.search, f) if m]


def test_an_acl_removed_behind_the_daemon_is_back_after_its_next_pass(periodic_daemon, backend):
    """The steady pass (a store snapshot, a few configfs reads of what
    decides access, a volume's lock only where something looks wrong)
    still finds drift: the first pass that runs after an ACL vanished and
    the TPG was opened to every initiator puts both back, CHAP and all."""
    d, tok = periodic_daemon, periodic_daemon.token
    vid = call("POST", "/volumes", {"volume": {"size": 1}}, tok)[1]["volume"]["id"]
    initiator = f"iqn.1994-05.com.example:drift-{uuid.uuid4().hex[:8]}"
    connector = {"initiator": initiator, "ip": "127.0.0.1", "host": "drift",
                 "platform": "x86_64", "os_type": "linux2", "multipath": False}
    status, body = call("POST", "/attachments", {"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()), "connector": connector}}, tok)
    assert status == 200
    att, info = body["attachment"]["id"], body["attachment"]["connection_info"]
    assert initiator in backend.inspect(vid).acls
    offset = d.log_path.stat().st_size
    assert wait_for(lambda: _passes_since(d, offset), 60, 0.5)
    # A quiet run compares no volume in full: only the outline is read.
    assert [m.group(4) for m in _passes_since(d, offset)][0] == "0"
    offset = d.log_path.stat().st_size
    assert backend.deauthorize(vid, initiator)          # behind the daemon's back
    tpg = configfs.tpg_dir(backend.target_iqn(vid))
    configfs.put(tpg, "attrib/generate_node_acls", "1")
    assert initiator not in backend.inspect(vid).acls

    def repairing_pass() -> bool:      # one pass, or two if one ran between the changes
        passes = _passes_since(d, offset)
        return sum(int(m.group(2)) for m in passes) >= 2 and \
            sum(int(m.group(3)) for m in passes) >= 1
    assert wait_for(repairing_pass, 120, 0.5), "no pass after the removal repaired it"
    assert configfs.read(tpg, "attrib/generate_node_acls") == "0"
    acl = backend.inspect(vid).acls.get(initiator)
    assert acl is not None and acl.chap is not None and acl.mapped_luns == {0: False}
    assert (acl.chap.userid, acl.chap.password.reveal()) == \
        (info["auth_username"], info["auth_password"])
    assert call("DELETE", f"/attachments/{att}", token=tok)[0] == 200
    assert call("DELETE", f"/volumes/{vid}", token=tok)[0] == 202
