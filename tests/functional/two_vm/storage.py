"""The storage-node guest of tools/two-vm: LIO and iscsiattachd on 10.213.0.1.

Starts the daemon with its API and iSCSI portal on the link address only,
creates a volume, publishes it (and the API token, 0600) to the host guest,
watches which address the host's session comes from, and once the host is
done checks that no ACL is left, deletes the volume and stops.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.functional.two_vm.common import (
    API_PORT,
    API_URL,
    HOST_DONE,
    HOST_IP,
    PREFIX,
    READY,
    STORAGE_IP,
    TOKEN,
    Failure,
    acl_dir,
    api,
    log,
    our_acls,
    results,
    verdict,
    wait_for,
    write_json,
)
from tests.support.daemon import Config, Daemon, file_backend
from tests.support.scratch import mount_scratch
from tests.support.wait import wait_for as support_wait

SIDE = "storage"
WORK = Path("/tmp/iscsiattach-two-vm")     # guest tmpfs: gone with the VM
ADDRESS = re.compile(r"Address (\S+) TCP")


def make_daemon(volumes: Path) -> Daemon:
    """The daemon's API and portal on the link address only."""
    config = Config(WORK / "state", API_PORT, file_backend(volumes), listen=STORAGE_IP,
                    prefix=PREFIX, portals=STORAGE_IP, debug=True, interval=3600,
                    # Plain HTTP on purpose: the two VMs share only a qemu
                    # point-to-point link.
                    extra="[api]\nallow_insecure_transport = true\n")
    return Daemon(config, log_path=results() / "storage-daemon.log",
                  config_path=WORK / "iscsiattach.conf")


def publish_token(state: Path) -> str:
    token = (state / "api-token").read_text().strip()
    folder = results() / TOKEN.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    fd = os.open(results() / TOKEN, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def create_volume(token: str) -> str:
    status, body = api("POST", "/volumes", token, {"volume": {"size": 1, "name": "two-vm"}})
    if status != 202:
        raise Failure(f"volume create answered {status}: {body}")
    vid = body["volume"]["id"]
    status, body = api("GET", f"/volumes/{vid}", token)
    if status != 200 or body["volume"]["status"] != "available":
        raise Failure(f"new volume {vid} is not available: {status} {body}")
    return vid


class SessionWatch:
    """Remembers every address an initiator's session came from (ACL info),
    and the ACLs' CHAP secrets, in memory only, to look for them in the logs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.secrets: set[str] = set()

    def __call__(self) -> None:
        for target, acls in our_acls().items():
            for acl in acls:
                path = acl_dir(target, acl)
                try:
                    self.seen.update(ADDRESS.findall((path / "info").read_text()))
                    for name in ("password", "password_mutual"):
                        self.secrets.add((path / "auth" / name).read_text().strip())
                except OSError:
                    pass    # the ACL went away between listing and reading
        self.secrets.discard("")


# Everything either side leaves in the results folder, besides the verdicts.
LOGS = ("storage-daemon.log", "storage.log", "host.log", "host.result.json",
        "iscsid-host.log", "iscsid-storage.log")


def no_secret_in_logs(chap: set[str], token: str, facts: dict) -> None:
    if not chap:
        raise Failure("never saw a CHAP secret on an ACL: were the targets closed?")
    secrets = chap | {token}
    leaked = [name for name in LOGS if (results() / name).exists()
              and any(s in (results() / name).read_text(errors="replace") for s in secrets)]
    facts["secrets_looked_for"] = len(secrets)
    if leaked:
        raise Failure(f"a CHAP secret or the API token is written in {leaked}")


def finish(token: str, vid: str, facts: dict) -> None:
    left = {t: a for t, a in our_acls().items() if a}
    facts["acls_left_after_host"] = left
    if left:
        raise Failure(f"ACLs left after the host detached: {left}")
    status, body = api("DELETE", f"/volumes/{vid}", token)
    if status != 202:
        raise Failure(f"volume delete answered {status}: {body}")
    support_wait(lambda: not our_acls(), 120, 0.5)
    facts["targets_left_after_delete"] = sorted(our_acls())
    if our_acls():
        raise Failure(f"targets left after the volume was deleted: {sorted(our_acls())}")


def run(facts: dict) -> None:
    mnt = mount_scratch(WORK, 4 << 30)
    daemon = make_daemon(mnt / "volumes")
    daemon.start(timeout=300, interval=0.5)
    watch = SessionWatch()
    try:
        log(SIDE, f"iscsiattachd serving on {API_URL}, portal {STORAGE_IP}:3260")
        token = publish_token(WORK / "state")
        vid = create_volume(token)
        facts["volume_id"] = vid
        write_json(results() / READY, {"volume_id": vid, "url": API_URL})
        log(SIDE, f"volume {vid} ready; waiting for the host")
        wait_for(results() / HOST_DONE, 660, "the host's end", poll=watch)
        facts["session_addresses_seen"] = sorted(watch.seen)
        log(SIDE, f"host done; sessions came from {sorted(watch.seen)}")
        if not watch.seen:
            raise Failure("never saw the host's iSCSI session in an ACL")
        if {a for a in watch.seen if not a.startswith(HOST_IP)}:
            raise Failure(f"a session came from elsewhere than {HOST_IP}: {watch.seen}")
        finish(token, vid, facts)
    finally:
        try:
            daemon.stop(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        subprocess.run(["umount", str(mnt)], check=False)
    no_secret_in_logs(watch.secrets, token, facts)     # the daemon's log is complete now


def main() -> int:
    facts: dict = {}
    try:
        run(facts)
    except Failure as exc:
        return verdict(SIDE, str(exc), facts)
    except Exception as exc:    # noqa: BLE001 - any crash is a verdict, not a hang
        return verdict(SIDE, f"{type(exc).__name__}: {exc}", facts)
    return verdict(SIDE, None, facts)


if __name__ == "__main__":
    sys.exit(main())
