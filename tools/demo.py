"""The demo flow, run inside the VM by tools/demo (see there)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oslo_config import cfg  # noqa: E402

from iscsiattach import conf  # noqa: E402
from iscsiattach.exception import IscsiAttachError  # noqa: E402
from iscsiattach.secret import Secret  # noqa: E402
from iscsiattach.target import Backing, BackingKind, ChapCredentials, ExportSpec, Grant  # noqa: E402
from iscsiattach.target.lio import LioBackend  # noqa: E402
from iscsiattach.target.options import portals_from_conf  # noqa: E402
from tests.functional.iscsi import (Node, initiator_name, sysfs_identity,  # noqa: E402
                                    wait_for, write_and_read_back)

SIZE = 256 << 20
T0 = time.monotonic()


def step(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def main() -> int:
    config = conf.register_all(cfg.ConfigOpts())
    config([], project="iscsiattach")
    lio = LioBackend(prefix=config.lio.target_prefix)
    portal = portals_from_conf(config)[0]
    volume_id = str(uuid.uuid4())
    work = Path(tempfile.mkdtemp(prefix="iscsiattach-demo-"))
    image = work / f"volume-{volume_id}.img"
    loop = node = None
    try:
        with open(image, "wb") as f:
            f.truncate(SIZE)
        loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                              capture_output=True, text=True).stdout.strip()
        step(f"volume {volume_id}: {SIZE >> 20} MiB sparse file on loop device {loop}")

        info = lio.export(ExportSpec(volume_id, Backing(BackingKind.BLOCK, loop), (portal,)))
        step(f"exported: target {info.target_iqn}, LUN {info.lun}, portal {portal}")
        step(f"  advertised identity: serial {info.unit_serial}, {info.naa_wwn}")

        me = initiator_name()
        chap = ChapCredentials(f"user-{volume_id[:8]}", Secret.generate())
        lio.authorize(volume_id, Grant(me, chap))
        step(f"authorized initiator {me} with CHAP user {chap.userid}, secret {chap.password}")

        node = Node(info.target_iqn, portal).setup(chap.userid, chap.password.reveal())
        res = node.login()
        if res.returncode:
            raise RuntimeError(f"login failed: {res.stderr.strip()}")
        dev = node.device()
        wwid, serial = sysfs_identity(dev)
        link = wait_for(lambda: os.path.exists(node.by_path()), 15) and node.by_path()
        step(f"logged in: device {dev} ({link or 'no by-path link from udev'})")
        if (wwid, serial) != (info.naa_wwn, info.unit_serial):
            raise RuntimeError(f"device {dev} is not volume {volume_id}: {wwid} {serial}")
        step(f"  confirmed: {dev} reports {wwid}, serial {serial}")

        ok = write_and_read_back(dev, 16 << 20)    # direct I/O: no page cache
        step(f"wrote and read back 16 MiB through {dev}: "
             f"{'checksums match' if ok else 'CHECKSUM MISMATCH'}")
        if not ok:
            return 1
        node.delete()
        node = None
        step("logged out")
        return 0
    except (IscsiAttachError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.delete()
        lio.unexport(volume_id)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        image.unlink(missing_ok=True)
        work.rmdir()
        left = lio.inspect(volume_id)
        step("cleaned up: " + ("nothing of the demo is left in LIO" if left is None
                               else "TARGET LEFT BEHIND"))


if __name__ == "__main__":
    sys.exit(main())
