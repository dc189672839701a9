"""The initiator's iSCSI sessions read from sysfs, in the shape os-brick
parses out of `iscsiadm -m session`: one program run fewer each time
os-brick looks (twice per connect), each as slow as the login in a slow
guest. The kernel's iSCSI transport class is what iscsiadm reads too."""
from __future__ import annotations

import os
import re

SYSFS = "/sys"
# scsi_host proc_name -> the transport name iscsiadm prints ("tcp: [1] ...").
TRANSPORTS = {"iscsi_tcp": "tcp", "ib_iser": "iser"}
Session = tuple[str, str, str, str, str]     # transport:, sid, portal, tpgt, target


def iscsi_sessions(sysfs: str = SYSFS) -> list[Session] | None:
    """Every session as (``tcp:``, sid, ``ip:port``, tpgt, target IQN), IPv6
    in brackets as iscsiadm prints it; None when sysfs cannot tell all of
    them (no iSCSI transport class, a session without its connection, a
    transport we do not know): the caller asks iscsiadm then."""
    top = f"{sysfs}/class/iscsi_session"
    if not os.path.isdir(top):
        return None
    found = []
    for name in sorted(os.listdir(top)):
        sid = name.removeprefix("session")
        try:
            found.append(_session(sysfs, top, name, sid))
        except (OSError, KeyError, ValueError):
            return None     # one we cannot read (maybe going away): iscsiadm decides
    return found


def _session(sysfs: str, top: str, name: str, sid: str) -> Session:
    path = os.path.realpath(f"{top}/{name}")
    host = re.search(r"/(host\d+)/" + re.escape(name) + "/", path)
    if host is None:
        raise ValueError(path)
    proc = _read(f"{sysfs}/class/scsi_host/{host.group(1)}/proc_name")
    conn = f"{sysfs}/class/iscsi_connection/connection{sid}:0"
    address = _read(f"{conn}/persistent_address")
    port = _read(f"{conn}/persistent_port")
    portal = f"{address}:{port}" if "." in address else f"[{address}]:{port}"
    return (f"{TRANSPORTS[proc]}:", sid, portal, _read(f"{top}/{name}/tpgt"),
            _read(f"{top}/{name}/targetname"))


def _read(path: str) -> str:
    with open(path) as f:
        value = f.read().strip()
    if not value or value == "(null)":
        raise ValueError(path)
    return value
