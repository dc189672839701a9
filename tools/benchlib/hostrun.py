"""Items 3 and 5 against a running iscsiattachd: the host's attach and
detach, the iscsiadm floor, and fio through the device."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from benchlib import datapath, host, ours
from benchlib.common import WORK, summary
from benchlib.profiles import Profile
from tests.support.scratch import sparse_file


def initiator_name() -> str:
    for line in Path("/etc/iscsi/initiatorname.iscsi").read_text().splitlines():
        if line.startswith("InitiatorName="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("no initiator name")


def forget_nodes(prefixes: tuple[str, ...]) -> None:
    """Log out of and delete node records of our prefixes only."""
    res = subprocess.run(["iscsiadm", "-m", "node"], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith(prefixes):
            portal = parts[0].split(",")[0]
            for op in (["--logout"], ["-o", "delete"]):
                subprocess.run(["iscsiadm", "-m", "node", "-T", parts[1], "-p", portal, *op],
                               capture_output=True)


class HostRun:
    def __init__(self, profile: Profile, daemon: ours.Daemon, spares: list[str],
                 mnt: Path) -> None:
        self.p, self.daemon, self.mnt = profile, daemon, mnt
        self.vol = {"floor": spares[-1], "inproc": spares[-2], "cli": spares[-3],
                    "fio": spares[-4]}
        self.state = WORK / "host-state"
        self.env = {**os.environ, "ISCSIATTACH_URL": ours.URL,
                    "ISCSIATTACH_TOKEN_FILE": str(daemon.state / "api-token"),
                    "ISCSIATTACH_HOST_STATE": str(WORK / "host-state-cli")}

    def _prepared(self, volume: str) -> dict[str, Any]:
        return ours.attach(self.daemon.token, volume, initiator_name())

    def floor(self) -> dict[str, Any]:
        att = self._prepared(self.vol["floor"])
        info = att["connection_info"]
        attach, detach = [], []
        try:
            for _ in range(self.p.floor_samples):
                phases, dev = host.floor_attach(info)
                attach.append(phases)
                detach.append(host.floor_detach(info, dev))
        finally:
            forget_nodes((info["target_iqn"],))
            ours.detach(self.daemon.token, att["id"])
        return {"attach": host.summarize_phases(attach), "detach": host.summarize_phases(detach)}

    def startup(self) -> dict[str, Any]:
        return host.python_startup(self.env)

    def in_process(self, as_is: bool) -> dict[str, Any]:
        """iscsiattach's host side in this process; ``as_is``: with os-brick's
        own connector and WWN wait instead of ours (the "before" figures)."""
        import contextlib
        attach, detach = [], []
        ctx = host.brick_as_is() if as_is else contextlib.nullcontext()
        # The first call pays os-brick's import and setup; not a sample.
        host.attach_detach(ours.URL, self.daemon.token, str(self.state), self.vol["inproc"])
        with ctx:
            for _ in range(self.p.e2e_samples):
                run = host.attach_detach(ours.URL, self.daemon.token, str(self.state),
                                         self.vol["inproc"])
                attach.append(run["attach"])
                detach.append(run["detach"])
        return {"attach": host.summarize_phases(attach), "detach": host.summarize_phases(detach)}

    def cli(self) -> dict[str, Any]:
        runs = [host.cli_attach_detach(self.env, self.vol["cli"])
                for _ in range(self.p.cli_samples)]
        return {"attach": summary([r["attach"] for r in runs]),
                "detach": summary([r["detach"] for r in runs])}

    # -- item 5 ----------------------------------------------------------------
    def fio_interleaved(self, iqn: str, secret: str) -> dict[str, Any]:
        """fio on the raw backing, through our export and through the export
        targetcli just made (its defaults; ACL for this host's initiator,
        while baseline (b)'s first sample stands), the three taking turns."""
        tcli = {"target_iqn": iqn, "target_portal": "127.0.0.1:3260",
                "auth_username": "bench", "auth_password": secret}
        raw = sparse_file(self.mnt / "raw" / "raw.img", 1 << 30)
        att = self._prepared(self.vol["fio"])
        ours_info = att["connection_info"]
        with contextlib.ExitStack() as undo:
            undo.callback(raw.unlink)
            undo.callback(ours.detach, self.daemon.token, att["id"])
            undo.callback(forget_nodes, (ours_info["target_iqn"], iqn))
            devices = {"raw": str(raw)}
            for name, info in (("iscsiattach", ours_info), ("targetcli", tcli)):
                _, devices[name] = host.floor_attach(info)
                undo.callback(host.floor_detach, info, devices[name])
            got = datapath.interleaved(devices, self.p.fio_rounds, self.p.fio_runtime,
                                       self.p.fio_size)
        for name, what in DEVICES.items():
            got[name]["device"] = what
        return got


DEVICES = {"raw": "file on ext4 (loop), O_DIRECT",
           "iscsiattach": "iscsiattach export (fileio aio, write_back), iSCSI loopback",
           "targetcli": "targetcli defaults (fileio buffered, write_back), iSCSI loopback"}
