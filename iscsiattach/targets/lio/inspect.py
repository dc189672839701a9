"""One export's state read from configfs with plain reads.

The reconciler's steady pass reads every export each interval, so this is
the hottest read path at scale. rtslib's objects cost more here than the
reads themselves: each property stats its folder again, and a fileio
object's ``size`` asks udev whether its file is a block device (a pyudev
lookup per volume). The values are those rtslib reports: attribute files
stripped, CHAP values "NULL" read as unset, the fileio size and path from
the storage object's ``info`` where ``udev_path`` is empty.
"""
from __future__ import annotations

import logging
import os
import re

from iscsiattach.exception import InvalidInput
from iscsiattach.model import (
    ACCESS_TPG_ATTRIBUTES,
    SECURE_TPG_ATTRIBUTES,
    AclState,
    Backing,
    BackingKind,
    ChapCredentials,
    ExportOutline,
    ExportState,
    Portal,
    TargetSession,
)
from iscsiattach.secret import Secret
from iscsiattach.targets.lio import configfs

LOG = logging.getLogger(__name__)


def export_state(volume_id: str, iqn: str) -> ExportState | None:
    if not os.path.isdir(configfs.target_dir(iqn)):
        return None
    tpg = configfs.tpg_dir(iqn)
    if not os.path.isdir(tpg):
        return ExportState(volume_id, iqn, False, {}, None, frozenset(), None, None)
    lun0 = configfs.lun_storage_object(configfs.lun0_dir(tpg))
    so = configfs.so_dir(*lun0) if lun0 else None
    return ExportState(
        volume_id=volume_id, target_iqn=iqn, tpg_enabled=_enabled(tpg),
        tpg_attributes={a: configfs.read(tpg, f"attrib/{a}") for a in SECURE_TPG_ATTRIBUTES},
        auth_method=configfs.read(tpg, "param/AuthMethod"),
        portals=frozenset(portals(tpg)),
        lun0_backing=backing(lun0[0], so) if lun0 and so else None,
        unit_serial=serial(so) if so else None,
        acls={e.name: acl_state(e.name, e.path) for e in os.scandir(f"{tpg}/acls")
              if e.is_dir()})


def export_outline(iqn: str) -> ExportOutline | None:
    """The outline in three reads and two lookups (export_state makes
    about twenty): what the steady pass reads of every export."""
    tpg = configfs.tpg_dir(iqn)
    try:
        acls = frozenset(os.listdir(f"{tpg}/acls"))
    except FileNotFoundError:
        if not os.path.isdir(configfs.target_dir(iqn)):
            return None
        return ExportOutline(False, {}, frozenset(), False)     # no TPG
    return ExportOutline(
        tpg_enabled=_enabled(tpg),
        access_attributes={a: configfs.read(tpg, f"attrib/{a}") for a in ACCESS_TPG_ATTRIBUTES},
        acls=acls, lun0=os.path.isdir(configfs.lun0_dir(tpg)))


# In an ACL's info file (Linux 6.1's lio_target_nacl_info_show).
_SESSION_ID = re.compile(r"LIO Session ID: (\d+)")
_SESSION_STATE = re.compile(r"Session State: (?:TARG_SESS_STATE_)?(\S+)")
_CONNECTION_ADDRESS = re.compile(r"Address (\S+) (?:TCP|SCTP)")


def sessions(iqn: str) -> list[TargetSession]:
    """Each ACL's session, from its info file; a target or ACL that goes
    meanwhile is simply not there."""
    try:
        acls = sorted(os.listdir(f"{configfs.tpg_dir(iqn)}/acls"))
    except FileNotFoundError:
        return []
    out = []
    for initiator in acls:
        try:
            info = configfs.read(configfs.acl_dir(configfs.tpg_dir(iqn), initiator), "info")
        except FileNotFoundError:
            continue
        found = parse_session(initiator, info)
        if found is not None:
            out.append(found)
    return out


def parse_session(initiator: str, info: str) -> TargetSession | None:
    sid, state = _SESSION_ID.search(info), _SESSION_STATE.search(info)
    if sid is None or state is None:
        return None             # "No active iSCSI Session for Initiator Endpoint"
    return TargetSession(initiator, int(sid.group(1)), state.group(1),
                         tuple(_CONNECTION_ADDRESS.findall(info)))


def _enabled(tpg: str) -> bool:
    try:
        return configfs.read(tpg, "enable") == "1"
    except FileNotFoundError:
        return True     # a fabric whose TPGs have no enable file has them always on


def portals(tpg: str) -> list[Portal]:
    out = []
    for name in configfs.portal_names(tpg):
        try:
            out.append(Portal.parse(name))
        except InvalidInput:
            LOG.warning("unparseable portal %s on %s", name, tpg)
    return out


def backing(kind: BackingKind, so: str) -> Backing:
    path = configfs.read(so, "udev_path")
    if kind is not BackingKind.FILE:
        return Backing(kind, path)
    info = " ".join(configfs.read(so, "info").split())
    size = _info(info, "Size")
    return Backing(kind, path or _info(info, "File") or "", int(size) if size else None,
                   direct_io=_info(info, "Async") == "1")


def _info(info: str, key: str) -> str | None:
    """One ``Key: value`` of a storage object's info (the last, as rtslib)."""
    found = re.findall(rf"(?:^| ){re.escape(key)}: ([^: ]+)", info)
    return found[-1] if found else None


def serial(so: str) -> str:
    return configfs.read(so, "wwn/vpd_unit_serial").partition(":")[2].strip()


def acl_state(initiator: str, acl: str) -> AclState:
    mapped = {lun: configfs.write_protected(folder)
              for lun, folder in configfs.mapped_luns(acl).items()}
    mutual = configfs.read_auth(acl, "password_mutual")
    try:
        chap = ChapCredentials(
            configfs.read_auth(acl, "userid"), Secret(configfs.read_auth(acl, "password")),
            configfs.read_auth(acl, "userid_mutual") or None, Secret(mutual) if mutual else None)
    except InvalidInput:
        chap = None     # empty or unusable credentials: reported as drift
    return AclState(initiator, chap, mapped)
