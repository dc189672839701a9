"""Build iscsiattachd state directories holding N connected volumes, on the
host before the VM boots (Python runs ~25x faster there).

``python -m benchlib.populate STATE_DIR N SPARE VOLUME_DIR``: N volumes each
with one completed attachment (its own initiator and CHAP secret), plus
SPARE available volumes for the benchmark's own attachments. It goes
through the real services (attachments.wiring.wire_services) over the
in-memory fake target, so the store is exactly what the daemon writes; the
daemon's first reconcile then builds those N exports in LIO. VOLUME_DIR is
the guest path of the volume files; their sparse files are made again in
the guest (``make_volume_files``).
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from benchlib.common import PREFIX_OURS, WORK
from benchlib.profiles import PROFILES
from iscsiattach.attachments.wiring import DB_NAME, wire_services
from iscsiattach.model import Portal
from iscsiattach.targets.fake import FakeBackend
from iscsiattach.volumes.file import FileBackend
from tests.support.scratch import sparse_file

VOLUME_DIR = str(WORK / "mnt" / "ours")   # the guest's path (ext4 scratch)


def populate(state: Path, n: int, spare: int, volume_dir: str) -> dict:
    if state.exists():
        shutil.rmtree(state)
    svc = wire_services(str(state), FakeBackend(prefix=PREFIX_OURS), FileBackend(volume_dir),
                        (Portal("127.0.0.1"),))
    for i in range(n):
        vid = svc.volume_service.create(1, f"fill-{i}").id
        connector = {"initiator": f"iqn.1994-05.com.example:fill-{i:05d}", "ip": "192.0.2.1",
                     "host": f"fill-{i}", "platform": "x86_64", "os_type": "linux2",
                     "multipath": False}
        att, _ = svc.attachment_service.create(vid, str(uuid.uuid4()), connector)
        svc.attachment_service.complete(att.id)
    spares = [svc.volume_service.create(1, f"spare-{i}").id for i in range(spare)]
    svc.store.close()
    info = {"n": n, "spares": spares}
    (state.parent / f"{state.name}.json").write_text(json.dumps(info))
    return info


def volume_locations(state: Path) -> list[str]:
    with sqlite3.connect(state / DB_NAME) as db:
        return [row[0] for row in db.execute("select location from volumes")]


def make_volume_files(state: Path, size: int = 1 << 30) -> int:
    """The volume files the store names, sparse, on the guest's ext4."""
    paths = volume_locations(state)
    for path in paths:
        sparse_file(Path(path), size)
    return len(paths)


def one(state: Path, n: int, spare: int) -> None:
    info = populate(state, n, spare, VOLUME_DIR)
    print(f"{state}: {info['n']} connected volumes, {len(info['spares'])} spare", flush=True)


def main() -> None:
    """``populate PROFILE DIR``: DIR/state-<N> for every stage, in parallel."""
    profile, out = PROFILES[sys.argv[1]], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "benchlib.populate", "--one",
                               str(out / f"state-{n}"), str(n), str(profile.spares)])
             for n in profile.stages]
    failed = [p.wait() for p in procs]
    shutil.rmtree(VOLUME_DIR, ignore_errors=True)   # host copies; the guest makes its own
    if any(failed):
        sys.exit("populate failed")


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        one(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()


