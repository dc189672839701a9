"""A real reboot, one phase per VM boot (run by tools/reboot-test).

Both boots mount the same ext4 image (kept in the results folder, which
outlives the guest) holding the daemon's state, the volume files, the host
side's records and a copy of the host's /etc/iscsi, as disks would on a
real machine.

before: daemon up, volumes created and attached from the host side (os-brick,
        node.startup=automatic), data written and fsynced; then the guest
        signals tools/reboot-test, which cuts the power: qemu is killed with
        SIGKILL while the daemon still runs, so nothing is stopped, synced or
        unmounted beyond what the daemon and the host fsynced themselves.
after:  /etc/iscsi back in place, iscsid restarted, the daemon started on
        the same state restores every export before it serves; the host logs
        in again (iscsiadm --loginall=automatic, as open-iscsi does at boot)
        with the credentials in its node records, confirms each device is
        its volume and reads the same data. Then everything is detached.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from iscsiattach.cli.client import Client
from iscsiattach.cli.host import ApiAdapter
from iscsiattach.host import brick
from iscsiattach.host.attach import GIB, HostSide
from iscsiattach.host.confirm import Expected, confirm
from tests.functional.daemon import URL, Daemon, call
from tests.functional.iscsi import checksum_io
from tests.support.scratch import make_ext4, mount_image
from tests.support.wait import wait_for

MNT = Path("/tmp/iscsiattach-persist")     # the guest's / is read-only; /tmp is not
VOLUMES = 3
DATA = 4 << 20


def mount(image: Path) -> None:
    """The image outlives the reboot: made on the first boot only."""
    if not image.exists():
        make_ext4(image, 4 << 30)
    mount_image(image, MNT)


def daemon() -> Daemon:
    return Daemon(MNT / "state", MNT / "volumes")


def host_side(token: str) -> HostSide:
    brick.setup(str(MNT / "host" / "locks"))
    return HostSide(ApiAdapter(Client(URL, token, "3.54")), brick, str(MNT / "host"))


def io(dev: str, data: bytes | None = None) -> str:
    return checksum_io(dev, DATA, data)


def before() -> dict:
    d = daemon()
    d.start(timeout=600)
    side = host_side(d.token)
    expect = []
    for _ in range(VOLUMES):
        status, body = call("POST", "/volumes", {"volume": {"size": 1}}, d.token)
        assert status == 202, body
        got = side.attach(body["volume"]["id"])
        expect.append({"volume_id": got.volume_id, "attachment_id": got.attachment_id,
                       "sha256": io(got.device, os.urandom(DATA))})
    # The host's own /etc would survive its reboot; the guest's is a tmpfs.
    # Its node records are written long before a real power cut, so the copy
    # is synced: what the cut tests is the daemon's state and the volumes.
    shutil.copytree("/etc/iscsi", MNT / "etc-iscsi", symlinks=True, dirs_exist_ok=True)
    write_json(MNT / "expect.json", expect)
    syncfs(MNT)
    # Written just before the cut and never synced: the report says whether
    # it survived (ext4 commits its journal every 5 s), nothing depends on it.
    (MNT / "unsynced-canary").write_text("written without fsync\n")
    return {"volumes": len(expect), "daemon_pid": d.proc.pid}


def after() -> dict:
    expect = json.loads((MNT / "expect.json").read_text())
    canary = (MNT / "unsynced-canary").exists()
    shutil.copytree(MNT / "etc-iscsi", "/etc/iscsi", symlinks=True, dirs_exist_ok=True)
    restart_iscsid()
    d = daemon()
    t0 = time.monotonic()
    d.start(timeout=600)
    ready_s = time.monotonic() - t0
    login = subprocess.run(["iscsiadm", "-m", "node", "--loginall=automatic"],
                           capture_output=True, text=True, timeout=300)
    assert login.returncode == 0, login.stderr
    # No manual rescan: the records say node.session.scan=automatic, as a
    # host's boot-time login needs to find its disks by itself.
    subprocess.run(["udevadm", "settle", "--timeout=60"], check=False)
    side = host_side(d.token)
    for want in expect:
        rec = side.find_records(want["attachment_id"])[0]
        dev = device_of(rec["connection_info"]["target_iqn"])
        confirm(dev, Expected(want["volume_id"], 1 * GIB, False))
        assert io(dev) == want["sha256"], f"volume {want['volume_id']}: data differs"
        status, body = call("GET", f"/attachments/{want['attachment_id']}", token=d.token)
        assert status == 200 and body["attachment"]["status"] == "attached", body
    for want in expect:
        side.detach(want["attachment_id"])
        assert call("DELETE", f"/volumes/{want['volume_id']}", token=d.token)[0] == 202
    d.stop()
    return {"volumes": len(expect), "daemon_ready_s": round(ready_s, 1),
            "unsynced_canary_survived": canary}


def restart_iscsid() -> None:
    """iscsid reads the initiator name at start: restart it with the old one."""
    subprocess.run(["pkill", "-x", "iscsid"], check=False)
    for _ in range(100):
        if subprocess.run(["pgrep", "-x", "iscsid"], capture_output=True).returncode:
            break
        time.sleep(0.1)
    subprocess.Popen(["iscsid", "-f"], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)


def device_of(target_iqn: str, timeout: float = 60) -> str:
    dev = wait_for(lambda: _device(target_iqn), timeout, 0.2)
    if not dev:
        raise AssertionError(f"no device for {target_iqn} after the re-login")
    return dev


def _device(target_iqn: str) -> str | None:
    for s in Path("/sys/class/iscsi_session").glob("session*"):
        if (s / "targetname").read_text().strip() != target_iqn:
            continue
        for block in s.glob("device/target*/*:0/block/*"):
            if os.path.exists(f"/dev/{block.name}"):
                return f"/dev/{block.name}"
    return None


def write_json(path: Path, value) -> None:
    """Durably: the file, then the rename in its folder."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(folder: Path) -> None:
    """syncfs(2) on the one filesystem (os.syncfs is not in Python 3.11)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
    finally:
        os.close(fd)


def wait_for_power_cut(verdict: Path) -> int:
    """The verdict is on the host now; tools/reboot-test kills qemu when it
    reads it. If no cut comes, that is a failure of the harness."""
    print(f"reboot_guest: {verdict.name} written; waiting for the power cut", flush=True)
    time.sleep(300)
    print("reboot_guest: no power cut came within 300 s", file=sys.stderr, flush=True)
    return 3


def main() -> int:
    phase, image = sys.argv[1], Path(sys.argv[2])
    mount(image)
    verdict = Path(os.environ["ISCSIATTACH_RESULTS"]) / f"reboot-{phase}.json"
    try:
        result = {"phase": phase, "ok": True, **(before() if phase == "before" else after())}
    except Exception as exc:            # the verdict file says why, for tools/reboot-test
        result = {"phase": phase, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    write_json(verdict, result)
    print(json.dumps(result))
    if phase == "before" and result["ok"]:
        return wait_for_power_cut(verdict)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
