"""open-iscsi's node records, written directly: CHAP secrets go there rather
than onto iscsiadm's command line (where any user reads them in ps), and a
few plain settings go there to save an iscsiadm run each."""
from __future__ import annotations

import glob
import os
import tempfile

from iscsiattach.exception import IscsiAttachError

NODE_DIRS = ("/etc/iscsi/nodes", "/var/lib/iscsi/nodes")


def node_records(target_iqn: str, portal: str,
                 node_dirs: tuple[str, ...] | None = None) -> list[str]:
    """open-iscsi's record files for (target, portal): a file <ip>,<port>
    when made with --op new, or <ip>,<port>,<tpgt>/<iface> from discovery."""
    address, _, port = portal.split(",")[0].rpartition(":")
    base = f"{glob.escape(address.strip('[]'))},{port}"
    found = []
    for top in node_dirs or NODE_DIRS:
        target = os.path.join(top, glob.escape(target_iqn))
        found += [p for p in glob.glob(os.path.join(target, base)) if os.path.isfile(p)]
        found += [p for p in glob.glob(os.path.join(target, base + ",*", "*"))
                  if os.path.isfile(p)]
    return found


def write_node_secret(target_iqn: str, portal: str, key: str, value: str,
                      node_dirs: tuple[str, ...] | None = None) -> None:
    if not write_node_setting(target_iqn, portal, key, value, node_dirs):
        raise IscsiAttachError(f"no open-iscsi node record for {target_iqn} at {portal}")


def write_node_setting(target_iqn: str, portal: str, key: str, value: str,
                       node_dirs: tuple[str, ...] | None = None,
                       known_only: bool = False) -> bool:
    """``key = value`` in every record of (target, portal), each replaced
    atomically (0600); False, with nothing written, if there is no record or,
    with ``known_only``, if a record does not list ``key`` already."""
    records = node_records(target_iqn, portal, node_dirs)
    lines = {}
    for record in records:
        with open(record) as f:
            lines[record] = f.read().splitlines()
    if not records or known_only and not all(
            any(_key(ln) == key for ln in kept) for kept in lines.values()):
        return False
    for record, kept in lines.items():
        kept = [ln for ln in kept if _key(ln) != key] + [f"{key} = {value}"]
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(record))      # 0600
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(kept) + "\n")
        os.replace(tmp, record)
    return True


def _key(line: str) -> str:
    return line.split("=")[0].strip()
