"""The demo flow, run inside the VM by tools/demo (see there).

The attach/detach v2 workflow through iscsiattach's service on real LIO:
a volume on a loop device, attachment create with this host's connector
(reserve + connect in one call), a CHAP login with the returned
connection_info, the device confirmed as that volume, data written and read
back, complete, logout, delete (after which the login is refused).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oslo_config import cfg  # noqa: E402

from iscsiattach import conf  # noqa: E402
from iscsiattach.attachments.services import build, lock_dir  # noqa: E402
from iscsiattach.exception import IscsiAttachError  # noqa: E402
from iscsiattach.target import Portal  # noqa: E402
from iscsiattach.target.lio import LioBackend  # noqa: E402
from iscsiattach.target.options import portals_from_conf  # noqa: E402
from iscsiattach.volumes.block import BlockBackend  # noqa: E402
from tests.functional.iscsi import (Node, initiator_name, sysfs_identity,  # noqa: E402
                                    write_and_read_back)

SIZE_GIB = 1
T0 = time.monotonic()


def step(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def main() -> int:
    config = conf.register_all(cfg.ConfigOpts())
    config([], project="iscsiattach")
    work = Path(tempfile.mkdtemp(prefix="iscsiattach-demo-"))
    state = work / "state"
    image = work / "disk.img"
    with open(image, "wb") as f:
        f.truncate(SIZE_GIB << 30)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    lio = LioBackend(prefix=config.lio.target_prefix, lock_path=lock_dir(str(state)))
    svc = build(str(state), lio, BlockBackend(), portals_from_conf(config))
    vol = node = None
    try:
        step(f"state in {state} (0700); loop device {loop} ({SIZE_GIB} GiB, sparse)")
        vol = svc.volumes.create(SIZE_GIB, name="demo", source=loop)
        step(f"volume-create: {vol.id} on {vol.location}, {vol.status}")

        me = initiator_name()
        connector = {"initiator": me, "ip": "127.0.0.1", "host": "demo-host",
                     "platform": "x86_64", "os_type": "linux", "multipath": False}
        att, info = svc.attachments.create(vol.id, str(uuid.uuid4()), connector)
        step(f"attachment-create with connector: {att.id}, {att.status}")
        for key in sorted(info):
            step(f"    {key:18s} {info[key]}")

        node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
        node.setup(info["auth_username"], info["auth_password"].reveal())
        res = node.login()
        if res.returncode:
            raise RuntimeError(f"login failed: {res.stderr.strip()}")
        dev = node.device()
        wwid, serial = sysfs_identity(dev)
        if serial != vol.id:
            raise RuntimeError(f"{dev} is not volume {vol.id}: serial {serial}")
        step(f"logged in with CHAP: {dev} is volume {serial} ({wwid})")
        ok = write_and_read_back(dev, 16 << 20)
        step(f"wrote and read back 16 MiB: {'checksums match' if ok else 'MISMATCH'}")
        if not ok:
            return 1
        att = svc.attachments.complete(att.id)
        step(f"attachment-complete: {att.status}; volume {svc.volumes.show(vol.id).status}")
        node.logout()
        svc.attachments.delete(att.id)
        step(f"attachment-delete; volume {svc.volumes.show(vol.id).status}")
        refused = node.login().returncode != 0
        step("login after delete: " + ("refused, as it must be" if refused else "ACCEPTED"))
        return 0 if refused else 1
    except (IscsiAttachError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.delete()
        if vol is not None:
            for a in svc.attachments.list(vol.id):
                svc.attachments.delete(a.id)
            svc.volumes.delete(vol.id)
        subprocess.run(["losetup", "-d", loop], check=False)
        left = lio.list_exports()
        step("cleaned up: " + ("nothing of the demo is left in LIO" if not left
                               else f"LEFT IN LIO: {left}"))


if __name__ == "__main__":
    sys.exit(main())
