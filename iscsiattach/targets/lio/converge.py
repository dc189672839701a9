"""Converging one export's LIO objects through rtslib-fb: read what is
there, change only what differs.

rtslib objects are built in ``mode='lookup'``/``'any'`` at the folders
configfs.py computes (rtslib finds the same ones from the same root), and
live only inside one locked operation of the backend. Where rtslib would walk
(LUN and ACL listings, a LUN's storage object), configfs.py reads the folder.
"""
from __future__ import annotations

import contextlib
import logging

from rtslib_fb import (
    LUN,
    TPG,
    BlockStorageObject,
    FileIOStorageObject,
    MappedLUN,
    NetworkPortal,
    NodeACL,
)
from rtslib_fb.utils import RTSLibError

from iscsiattach.exception import InvalidInput, IscsiAttachError, TargetError
from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES,
    Backing,
    BackingKind,
    ChapCredentials,
    ExportSpec,
    Portal,
    unit_serial,
)
from iscsiattach.secret import Secret
from iscsiattach.targets.base import AUTH_METHOD
from iscsiattach.targets.lio import configfs, inspect

LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def translated(action: str):
    """Turn rtslib/kernel errors into TargetError naming ``action``.

    CHAP writes do not go through here (see ``_write_auth``): rtslib's
    message for them could quote the value.
    """
    try:
        yield
    except IscsiAttachError:
        raise
    except (RTSLibError, OSError) as exc:
        raise TargetError(f"{action}: {exc or type(exc).__name__}") from None


# -- storage objects -----------------------------------------------------------
def so_at(kind: BackingKind, index: int, name: str):
    cls = FileIOStorageObject if kind is BackingKind.FILE else BlockStorageObject
    return cls(name, index=index)


def backing_of(so) -> Backing:
    kind = BackingKind.FILE if isinstance(so, FileIOStorageObject) else BackingKind.BLOCK
    return inspect.backing(kind, so.path)


def storage_object_matches(so, spec: ExportSpec) -> bool:
    try:
        return backing_of(so) == spec.backing and so.wwn == unit_serial(spec.volume_id)
    except (RTSLibError, OSError, InvalidInput):
        return False        # half-configured (a crash mid-create): replace it


# -- the TPG ---------------------------------------------------------------------
def secure_tpg(tpg: TPG) -> None:
    wrong = {n: w for n, w in SECURE_TPG_ATTRIBUTES.items() if tpg.get_attribute(n) != w}
    bad_auth = tpg.get_parameter("AuthMethod") != AUTH_METHOD
    if not wrong and not bad_auth:
        return
    if tpg.enable:
        # Fixing the flags only changes future logins; disabling the TPG
        # drops sessions that got in while it was open. Re-enabled by export.
        LOG.warning("TPG of %s was open; disabling it to drop its sessions",
                    tpg.parent_target.wwn)
        tpg.enable = False
    for name, want in wrong.items():
        LOG.info("setting %s=%s on %s", name, want, tpg.parent_target.wwn)
        tpg.set_attribute(name, want)
    if bad_auth:
        tpg.set_parameter("AuthMethod", AUTH_METHOD)


def converge_portals(tpg: TPG, want: tuple[Portal, ...]) -> None:
    have = set(inspect.portals(tpg.path))
    for portal in have - set(want):
        LOG.info("removing portal %s from %s", portal, tpg.parent_target.wwn)
        NetworkPortal(tpg, portal.address, portal.port, mode="lookup").delete()
    for portal in set(want) - have:
        with translated(f"listening on {portal}"):
            NetworkPortal(tpg, portal.address, portal.port, mode="create")


# -- LUN 0 -------------------------------------------------------------------------
def lun0_storage_object(tpg: TPG):
    found = configfs.lun_storage_object(configfs.lun0_dir(tpg.path))
    return so_at(*found) if found else None


def converge_lun0(tpg: TPG, so, kept: dict[str, bool]) -> None:
    current = lun0_storage_object(tpg)
    if current is not None and current.path == so.path:
        return
    write_protect = {**kept, **unlink_lun0(tpg)}
    LUN(tpg, 0, so)
    # Mapped LUNs went with the old LUN; put back the ones ACLs had.
    for acl_name, wp in write_protect.items():
        MappedLUN(NodeACL(tpg, acl_name, mode="lookup"), 0, 0, write_protect=wp)


def unlink_lun0(tpg: TPG) -> dict[str, bool]:
    """Remove LUN 0 (and its mapped LUNs); return each ACL's write-protect flag."""
    if not configfs.is_dir(configfs.lun0_dir(tpg.path)):
        return {}
    kept = {}
    for acl in tpg.node_acls:
        mapped = configfs.mapped_lun0_dir(acl.path)
        if configfs.is_dir(mapped):
            kept[acl.node_wwn] = configfs.write_protected(mapped)
    LUN(tpg, 0).delete()
    return kept


# -- ACLs ----------------------------------------------------------------------------
def converge_chap(acl: NodeACL, chap: ChapCredentials) -> None:
    blank = Secret("")
    for attr, want in (("chap_userid", Secret(chap.userid)),
                       ("chap_password", chap.password),
                       ("chap_mutual_userid", Secret(chap.mutual_userid or "")),
                       ("chap_mutual_password", chap.mutual_password or blank)):
        _write_auth(acl, attr, want)
    configfs.hide_secrets(acl.path)


def _write_auth(acl: NodeACL, attr: str, want: Secret) -> None:
    """Set one CHAP attribute if it differs; the value never reaches an error."""
    try:
        if getattr(acl, attr) == want.reveal():
            return
    except (RTSLibError, OSError):
        pass                # unreadable: write it, which reports a real failure
    configfs.set_secret(lambda value: setattr(acl, attr, value), want,
                        f"{attr} for {acl.node_wwn}", errors=(RTSLibError, OSError))


def converge_mapping(acl: NodeACL, read_only: bool) -> None:
    for lun in configfs.mapped_luns(acl.path):
        if lun != 0:
            MappedLUN(acl, lun).delete()
    mapped = configfs.mapped_lun0_dir(acl.path)
    configfs.remove_if_unlinked(mapped)
    if configfs.is_dir(mapped):
        current = MappedLUN(acl, 0)
        if current.write_protect != read_only:
            current.write_protect = read_only
    else:
        MappedLUN(acl, 0, 0, write_protect=read_only)
