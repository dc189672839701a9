"""The real initiator, driven with iscsiadm (not through iscsiattach's code).

Test-only helpers: a node record per (target, portal), CHAP login, the block
device that appeared, and data written and read back with direct I/O.
"""
from __future__ import annotations

import glob
import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from iscsiattach.model import Portal
from tests.functional.logwindow import LogWindow, iscsid_log
from tests.support.blockio import checksum_io, write_and_read_back
from tests.support.wait import wait_for

# Re-exported: the tests import them from here with the initiator's helpers.
__all__ = ["BAD_CREDENTIALS", "NO_ACL", "NO_PORTAL", "NO_TARGET", "TARGET_NOT_PROVEN", "Node",
           "Refusal", "checksum_io", "iscsiadm", "initiator_name", "make_iface", "delete_iface",
           "sysfs_identity", "wait_for", "write_and_read_back"]

# iscsiadm's exit status for a login the target refused as temporary (status
# class 03, "target error", e.g. LIO's "service unavailable"): retried once
# by login_retrying, never by a refusal test.
ISCSI_ERR_LOGIN = 5


@dataclass(frozen=True)
class Refusal:
    """Why a login was refused: iscsiadm's exit status (open-iscsi's
    iscsi_err.h) and the line iscsid logs for the target's login status.
    The exit status alone does not tell a missing ACL from a wrong secret
    (LIO answers 02/02 and 02/01, iscsiadm exits 24 for both), so a refusal
    is asserted by both: a target error under load, or the wrong refusal,
    cannot pass for the one a test expects."""
    exit_status: int
    iscsid_says: str
    kernel_says: str = ""           # LIO's own reason, where iscsid's is not enough


# Measured with the VM's open-iscsi 2.1.8 against LIO on Linux 6.1:
BAD_CREDENTIALS = Refusal(24, "failed authentication with target")      # status 02/01
NO_ACL = Refusal(24, "failed authorization with target")                # 02/02
# An initiator that offers no CHAP at all to a TPG enforcing authentication:
# LIO refuses it before it looks for an ACL, with the 02/01 of bad secrets.
NO_CHAP_OFFERED = Refusal(24, "failed authentication with target",
                          "has not been successfully authenticated, and the Target "
                          "is enforcing iSCSI Authentication")
# LIO answers a login for a target it does not have with 03/01 "service
# unavailable", as it answers a transient failure: its kernel line tells.
NO_TARGET = Refusal(5, "target error (03/01)", "Unable to locate Target IQN")
# Mutual CHAP: the target's answer to the initiator's challenge is wrong.
TARGET_NOT_PROVEN = Refusal(19, "Login authentication failed with target")
# The last target on a portal is gone, and LIO stopped listening there.
NO_PORTAL = Refusal(8, "Connection refused")


def iscsiadm(*args: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    res = subprocess.run(["iscsiadm", *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"iscsiadm {' '.join(args[:6])} -> {res.returncode}: "
                             f"{res.stderr.strip() or res.stdout.strip()}")
    return res


def initiator_name() -> str:
    for line in Path("/etc/iscsi/initiatorname.iscsi").read_text().splitlines():
        if line.startswith("InitiatorName="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no InitiatorName in /etc/iscsi/initiatorname.iscsi")


def make_iface(name: str, initiator: str) -> str:
    """An open-iscsi iface that logs in as another initiator name: one
    machine playing several hosts."""
    iscsiadm("-m", "iface", "-I", name, "-o", "new", check=False)
    iscsiadm("-m", "iface", "-I", name, "-o", "update", "-n", "iface.initiatorname",
             "-v", initiator)
    return name


def delete_iface(name: str) -> None:
    iscsiadm("-m", "iface", "-I", name, "-o", "delete", check=False)


class Node:
    def __init__(self, target_iqn: str, portal: Portal, iface: str | None = None) -> None:
        self.iqn, self.portal, self.iface = target_iqn, portal, iface

    def _node(self, *args: str, check: bool = True, timeout: int = 60):
        iface = ("-I", self.iface) if self.iface else ()
        return iscsiadm("-m", "node", "-T", self.iqn, "-p", str(self.portal), *iface, *args,
                        check=check, timeout=timeout)

    def setup(self, user: str, secret: str, mutual: tuple[str, str] | None = None) -> Node:
        self._node("-o", "new")
        settings = {"node.session.auth.authmethod": "CHAP",
                    "node.session.auth.username": user,
                    # An auth failure ends at once instead of retrying.
                    "node.session.initial_login_retry_max": "0",
                    # A dropped session fails its I/O quickly.
                    "node.session.timeo.replacement_timeout": "5"}
        secrets = {"node.session.auth.password": secret}
        if mutual:
            settings["node.session.auth.username_in"] = mutual[0]
            secrets["node.session.auth.password_in"] = mutual[1]
        for key, value in settings.items():
            self._node("-o", "update", "-n", key, "-v", value)
        self._write_secrets(secrets)
        return self

    def setup_without_auth(self) -> Node:
        self._node("-o", "new")
        for key, value in (("node.session.auth.authmethod", "None"),
                           ("node.session.initial_login_retry_max", "0"),
                           ("node.session.timeo.replacement_timeout", "5")):
            self._node("-o", "update", "-n", key, "-v", value)
        return self

    def record_file(self) -> Path:
        ip = self.portal.ip     # no brackets, IPv6 included
        # A record made with "-o new" is a file <ip>,<port>; one made by
        # discovery is a folder <ip>,<port>,<tpgt> holding "default".
        base = f"/etc/iscsi/nodes/{glob.escape(self.iqn)}/{glob.escape(ip)},{self.portal.port}"
        # A flat file names its iface inside (one iface per target and
        # portal in that layout).
        hits = [p for p in glob.glob(base) if os.path.isfile(p)
                and _record_iface(p) == (self.iface or "default")] + \
            glob.glob(base + f",*/{glob.escape(self.iface or 'default')}")
        if not hits and self.iface:
            # Wherever this open-iscsi keeps a non-default iface's record.
            hits = [str(p) for p in Path("/etc/iscsi/nodes", self.iqn).rglob(self.iface)
                    if p.is_file()]
        if len(hits) != 1:
            tree = [str(p) for p in Path("/etc/iscsi/nodes", self.iqn).rglob("*")]
            raise AssertionError(f"expected one node record for {self.iqn} "
                                 f"(iface {self.iface}), found {hits}; records: {tree}")
        return Path(hits[0])

    def _write_secrets(self, secrets: dict[str, str]) -> None:
        """Put CHAP secrets into the 0600 node record, not on iscsiadm's
        command line where any user could read them in ps."""
        record = self.record_file()
        lines = [ln for ln in record.read_text().splitlines()
                 if ln.split("=")[0].strip() not in secrets]
        lines += [f"{key} = {value}" for key, value in secrets.items()]
        tmp = record.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, record)

    def login(self) -> subprocess.CompletedProcess:
        """One login attempt: what a refusal test wants."""
        return self._node("--login", check=False, timeout=90)

    def login_retrying(self) -> subprocess.CompletedProcess:
        """A login that should succeed, tried again once if the target called
        its refusal temporary: RFC 7143 lets an initiator retry a target
        error, and a host's iscsid does (initial_login_retry_max; 0 in these
        records so that refused credentials end at once). The retry is
        reported as a warning, so the run's summary shows it."""
        res = self.login()
        if res.returncode == ISCSI_ERR_LOGIN:
            warnings.warn(f"login to {self.iqn} at {self.portal} retried after a target "
                          f"error: {res.stderr.strip()}", stacklevel=2)
            time.sleep(1)
            res = self.login()
        return res

    def assert_refused(self, *reasons: Refusal) -> None:
        """One login attempt, refused for one of exactly ``reasons``, leaving
        no session behind."""
        window = LogWindow(iscsid_log())
        try:
            res = self.login()
            said, kernel = window.iscsid(), window.kernel()
        finally:
            window.close()
        assert any(res.returncode == r.exit_status and r.iscsid_says in said
                   and r.kernel_says in kernel for r in reasons), (
            f"login to {self.iqn}: expected {reasons}; got exit {res.returncode}: "
            f"{res.stderr.strip()}; iscsid: {said.strip()[-600:]}; kernel: {kernel[-600:]}")
        assert self.session_dirs() == []

    def logout(self) -> None:
        self._node("--logout", check=False)

    def delete(self) -> None:
        self.logout()
        self._node("-o", "delete", check=False)

    def session_dirs(self) -> list[Path]:
        out = []
        for s in glob.glob("/sys/class/iscsi_session/session*"):
            try:
                # With an iface, only its own session: several ifaces (hosts
                # played by one machine) may be logged in to one target.
                if Path(s, "targetname").read_text().strip() == self.iqn and (
                        not self.iface or
                        Path(s, "ifacename").read_text().strip() == self.iface):
                    out.append(Path(s))
            except OSError:
                pass
        return out

    def session_state(self) -> str | None:
        dirs = self.session_dirs()
        return Path(dirs[0], "state").read_text().strip() if dirs else None

    def device(self, timeout: float = 30) -> str:
        """The block device of LUN 0 of our session (from sysfs, like os-brick)."""
        dev = wait_for(self._device, timeout)
        if not dev:
            raise AssertionError(f"no block device appeared for {self.iqn}")
        return dev

    def _device(self) -> str | None:
        for s in self.session_dirs():
            blocks = glob.glob(str(s / "device" / "target*" / "*:0" / "block" / "*"))
            if blocks:
                dev = "/dev/" + os.path.basename(blocks[0])
                if os.path.exists(dev):
                    return dev
        return None

    def by_path(self) -> str:
        return f"/dev/disk/by-path/ip-{self.portal}-iscsi-{self.iqn}-lun-0"


def _record_iface(path: str) -> str:
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "iface.iscsi_ifacename":
            return value.strip()
    return "default"


def sysfs_identity(dev: str) -> tuple[str, str]:
    """(wwid, unit serial) the kernel read from the LUN's VPD pages."""
    base = Path("/sys/block", os.path.basename(dev), "device")
    wwid = (base / "wwid").read_text().strip()
    pg80 = (base / "vpd_pg80").read_bytes()
    return wwid, pg80[4:4 + pg80[3]].decode().strip("\x00 ")
