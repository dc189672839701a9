"""os-brick, the only module that imports it: connector, connect, disconnect.

os-brick runs as root without sudo: root_helper is empty and its privileged
calls run in this process (no privsep daemon, no sudo; NOTES item 11). Its
locks live under the state directory. os-brick masks CHAP passwords in its
own logs, but it sets them with `iscsiadm ... -n node.session.auth.password
-v SECRET`, where any user can read them in ps; our connector writes those
values straight into the node record (0600) instead.
"""
from __future__ import annotations

import fcntl
import os
import platform
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from iscsiattach.exception import BrickError
from iscsiattach.host.initiator import local_initiator
from iscsiattach.host.node_record import node_records, write_node_secret, write_node_setting
from iscsiattach.host.polling import first_look_waits
from iscsiattach.host.sessions import iscsi_sessions

_READY: set[str] = set()


def setup(lock_path: str) -> None:
    """Configure os-brick once per process (lock path, in-process privsep)."""
    if lock_path in _READY:
        return
    os.makedirs(lock_path, mode=0o700, exist_ok=True)
    # os-brick's privsep imports eventlet, whose green DNS (dnspython) is a
    # third of os-brick's import time; nothing here resolves names through
    # eventlet (no monkey patching, privsep runs in this process).
    os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # eventlet's deprecation notice
        import os_brick
        from os_brick import privileged
        from oslo_config import cfg
    from oslo_concurrency import lockutils  # noqa: F401 - registers [oslo_concurrency]
    # os-brick reads its options from the global CONF; lock_path first, since
    # setup() copies it into os-brick's own group.
    cfg.CONF([], project="iscsiattach-host")
    cfg.CONF.set_override("lock_path", lock_path, "oslo_concurrency")
    os_brick.setup(cfg.CONF)
    privileged.default.set_client_mode(False)
    privileged.brick_privsep_hide_output.set_client_mode(False)
    _READY.add(lock_path)


def connector_properties(my_ip: str | None, multipath: bool) -> dict[str, Any]:
    """This host's connector: the fields of os-brick's get_connector_properties()
    that an iSCSI attachment uses (platform, os_type, ip, host, multipath,
    enforce_multipath, initiator).

    os-brick's own function asks the connector of every protocol and runs six
    programs (cat, findmnt, blkid, dmidecode, nvme x2) for NVMe and host-uuid
    fields no iSCSI attachment reads; in a slow guest they cost seconds per
    attach. The iSCSI connector's only field is the initiator name, which
    os-brick reads with `cat`; we read the file ourselves (we run as root).
    """
    initiator = local_initiator()
    if not initiator:
        raise BrickError("this host has no iSCSI initiator name "
                         "(/etc/iscsi/initiatorname.iscsi); install open-iscsi")
    return {"platform": platform.machine(), "os_type": sys.platform,
            "ip": my_ip or "127.0.0.1", "host": socket.gethostname(),
            "multipath": multipath, "enforce_multipath": False, "initiator": initiator}


SECRET_NODE_KEYS = ("node.session.auth.password", "node.session.auth.password_in")
# Settings os-brick sets with one iscsiadm run each (node.startup after the
# login, the rest before it), written into the node record instead, as the
# secrets are: in a slow guest each run costs about as much as the login.
# `iscsiadm -o update` rewrites that same file and nothing else (iscsid reads
# it at the next login). The CHAP ones are as old as open-iscsi's records;
# the scan mode is newer, so it goes there only where the record lists it
# already (iscsiadm puts every setting it knows into a new record), and an
# open-iscsi without it still answers for it through iscsiadm.
RECORD_NODE_KEYS = {"node.session.auth.authmethod": False,     # key: only where listed
                    "node.session.auth.username": False,
                    "node.session.auth.username_in": False,
                    "node.session.scan": True,
                    "node.startup": True}


# os-brick asks for manual scans so that a login to a target shared by many
# volumes does not bring every LUN of it in. Each target here holds one LUN,
# the volume's, so the kernel's own scan at login finds just that one; and
# the boot-time login open-iscsi makes for node.startup = automatic then
# brings the device back by itself (with manual scans it logs in and no disk
# appears).
SCAN_MODE = "auto"


# The os-brick names overridden or wrapped below are private: each is a seam
# that tests/unit/test_seams.py checks against the os-brick installed.
def _iscsi(multipath: bool, scan_attempts: int = 5):
    from os_brick.initiator.connectors.iscsi import ISCSIConnector

    class RecordSecretsConnector(ISCSIConnector):
        """os-brick's iSCSI connector, but CHAP secrets (and the settings of
        RECORD_NODE_KEYS) go into the node record, never onto iscsiadm's
        command line; sysfs commands are written, not piped through `tee`;
        what a file tells is read, not asked of a program (the record's
        existence, the sessions, multipathd only where multipath is on)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            scsi = self._linuxscsi
            scsi.get_sysfs_wwn = wait_for_udev(scsi.get_sysfs_wwn)
            scsi.device_name_by_hctl = wait_for_disk(scsi.device_name_by_hctl)
            scsi.echo_scsi_command = echo_scsi_command
            scsi.flush_device_io = flush_device_io
            scsi.is_multipath_running = multipath_running(scsi.is_multipath_running)

        def check_multipath(self, props):
            # Asks multipathd (a program run) only to warn that multipath
            # was asked for and is missing: nothing to check without it.
            if self.use_multipath:
                super().check_multipath(props)

        def _run_iscsiadm(self, props, command, **kwargs):
            # A bare `iscsiadm -m node -T -p` only asks whether the record
            # exists (its output is unused): the record's file tells. A
            # missing one is answered as iscsiadm answers it (exit 21, "No
            # records found" on stderr) where the caller accepts exit 21.
            if command == ():
                if node_records(props["target_iqn"], props["target_portal"]):
                    return "", ""
                if NO_RECORDS in (kwargs.get("check_exit_code") or ()):
                    return "", "iscsiadm: No records found\n"
            return super()._run_iscsiadm(props, command, **kwargs)

        def _get_iscsi_nodes(self):
            # Asked only whether a (portal, target) has a record: the files tell.
            return RecordedNodes(super()._get_iscsi_nodes)

        def _get_iscsi_sessions_full(self):
            listed = iscsi_sessions()
            return super()._get_iscsi_sessions_full() if listed is None else listed

        def _iscsiadm_update(self, props, key, value, **kwargs):
            iqn, portal = props["target_iqn"], props["target_portal"]
            if key == "node.session.scan":
                value = SCAN_MODE
            if key in SECRET_NODE_KEYS and value:
                write_node_secret(iqn, portal, key, str(value))
                return "", ""
            if key in RECORD_NODE_KEYS and value and write_node_setting(
                    iqn, portal, key, str(value), known_only=RECORD_NODE_KEYS[key]):
                return "", ""
            return super()._iscsiadm_update(props, key, value, **kwargs)

    return RecordSecretsConnector(root_helper="", use_multipath=multipath,
                                  device_scan_attempts=scan_attempts)


NO_RECORDS = 21                 # iscsiadm's exit status for "No records found"


class RecordedNodes:
    """os-brick's list of (portal, target) node records, as it uses it (``in``),
    answered from the record files; iterating asks iscsiadm as os-brick did."""

    def __init__(self, listing: Callable[[], list]) -> None:
        self._listing = listing

    def __contains__(self, node: object) -> bool:
        return isinstance(node, tuple) and len(node) == 2 and \
            bool(node_records(node[1], node[0]))

    def __iter__(self):
        return iter(self._listing())


# multipathd's control socket (abstract), listed while multipathd or
# systemd's multipathd.socket listens on it.
MULTIPATHD_SOCKET = "@/org/kernel/linux/storage/multipathd"
UNIX_SOCKETS = "/proc/net/unix"


def multipathd_listening(sockets: str | None = None) -> bool:
    try:
        with open(sockets or UNIX_SOCKETS) as f:
            return any(line.rstrip().endswith(" " + MULTIPATHD_SOCKET) for line in f)
    except OSError:
        return True         # cannot tell: let os-brick ask multipathd


def multipath_running(ask: Callable[..., bool]) -> Callable[..., bool]:
    """os-brick's LinuxSCSI.is_multipath_running (``ask``: it runs `multipathd
    show status`), asked only where multipathd listens: a detach asks it
    for every device, multipath or not."""
    def running(*args, **kwargs) -> bool:
        return multipathd_listening() and ask(*args, **kwargs)
    return running


def with_target_lists(connection_info: dict[str, Any]) -> dict[str, Any]:
    """The connection info with Cinder's plural keys (``target_portals``,
    ``target_iqns``, ``target_luns``) where it has only the single ones:
    os-brick then takes the targets from it, where a disconnect without
    them first asks iscsiadm's discovery database (a program run that
    finds nothing for a target logged in without discovery)."""
    props = dict(connection_info)
    if not all(k in props for k in PLURAL_KEYS) and \
            all(k in props for k in ("target_portal", "target_iqn", "target_lun")):
        props |= {"target_portals": [props["target_portal"]],
                  "target_iqns": [props["target_iqn"]], "target_luns": [props["target_lun"]]}
    return props


PLURAL_KEYS = ("target_portals", "target_iqns", "target_luns")


def echo_scsi_command(path: str, content: str) -> None:
    """os-brick's LinuxSCSI.echo_scsi_command (a SCSI scan or a device's
    delete in sysfs) without its `tee` process: we run as root (root_helper
    is empty), so the write needs no helper program."""
    with open(path, "a") as f:
        f.write(content)


BLKFLSBUF = 0x1261          # <linux/fs.h> _IO(0x12, 97): what `blockdev --flushbufs` asks
FLUSH_TIMEOUT = 300.0       # os-brick's bound on one flush
FLUSH_ATTEMPTS, FLUSH_INTERVAL = 3, 10.0     # and its retries


def flush_device_io(device: str, timeout: float = FLUSH_TIMEOUT,
                    attempts: int = FLUSH_ATTEMPTS, interval: float = FLUSH_INTERVAL) -> None:
    """os-brick's LinuxSCSI.flush_device_io (before a device is removed: its
    dirty buffers written, its cache dropped) as the ioctl `blockdev
    --flushbufs` makes, without running that program; bounded and retried
    as os-brick bounds and retries the program. A flush stuck on a broken
    session is left to finish in its thread (the kernel fails its I/O after
    the session's replacement timeout), as a stuck `blockdev` would be."""
    if not os.path.exists(device):
        return
    for attempt in range(1, attempts + 1):
        try:
            _flush_within(device, timeout)
            return
        except OSError:
            if attempt == attempts:
                raise
            time.sleep(interval)


def _flush_within(device: str, timeout: float) -> None:
    failed: list[OSError] = []

    def flush() -> None:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, BLKFLSBUF, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            failed.append(exc)
    worker = threading.Thread(target=flush, name="flush", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"flushing {device} took over {timeout:.0f} s")
    if failed:
        raise failed[0]


UDEV_CONTROL = "/run/udev/control"     # udevd's socket: there only while udevd runs


def wait_for_udev(look: Callable[..., str], timeout: float = 10.0,
                  step: float = 0.01) -> Callable[..., str]:
    """os-brick's get_sysfs_wwn (``look``), made to wait for udev at a fine step.

    After the login, ISCSIConnector._connect_single_volume (os-brick 7.1)
    asks LinuxSCSI.get_sysfs_wwn for the new disk's WWN. That returns the WWID
    from sysfs only once udev's /dev/disk/by-id/scsi-<wwid> link exists, and on
    a fresh login udev has not run its rules yet: the first look always misses
    and os-brick sleeps a fixed 1 s before the next one. No os-brick option
    changes that. Here the first look per device list is repeated every
    ``step`` until it succeeds (so it returns as soon as udev is done), at
    most ``timeout``; os-brick's own look decides, so disks with several
    page-0x83 designators (found through the links) work as before. Multipath
    devices and hosts without a running udevd (no link will come) skip it.
    """
    def no_link_coming(device_names, mpath=None) -> bool:
        return bool(mpath) or not os.path.exists(UDEV_CONTROL)
    return first_look_waits(look, timeout, step, skip=no_link_coming)


def wait_for_disk(look: Callable[..., str | None], timeout: float = 1.0,
                  step: float = 0.01) -> Callable[..., str | None]:
    """os-brick's device_name_by_hctl (``look``), polled after the scan.

    ISCSIConnector._connect_vol writes the SCSI scan, looks for the disk at
    once and, on a miss, sleeps 1 s. The kernel adds the disk's block device
    a moment after the scan returns (sd probes asynchronously); `tee`'s own
    start used to hide that moment, our direct write does not. The first
    look is repeated every ``step`` for up to the second os-brick would
    sleep; after that os-brick's rescans run as they always did."""
    return first_look_waits(look, timeout, step)


def connect(connection_info: dict[str, Any], multipath: bool) -> dict[str, Any]:
    try:
        device = _iscsi(multipath).connect_volume(with_target_lists(connection_info))
    except Exception as exc:        # os-brick raises many types; one line for ours
        raise BrickError(f"os-brick could not connect: {_why(exc, connection_info)}") from None
    if not device or not device.get("path"):
        raise BrickError("os-brick connected but reported no device path")
    return device


def disconnect(connection_info: dict[str, Any], device: dict[str, Any], multipath: bool,
               force: bool = False) -> None:
    try:
        _iscsi(multipath).disconnect_volume(with_target_lists(connection_info), dict(device),
                                            force=force, ignore_errors=force)
    except Exception as exc:
        raise BrickError(f"os-brick could not disconnect: {_why(exc, connection_info)}") from None


def _why(exc: Exception, connection_info: dict[str, Any]) -> str:
    """First line of os-brick's error, with any CHAP secret cut out: an
    iscsiadm failure can quote the command line that carried it."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}"
    for key in ("auth_password", "discovery_auth_password"):
        secret = connection_info.get(key)
        if secret:
            line = line.replace(str(secret), "***")
    return line
