"""LIO's configfs: where our objects live, and every raw read and write of it.

The one module that knows LIO's tree, as rtslib-fb's ``CFSNode`` and
nvmetcli's ``nvme.py`` do for theirs. For volume ``V`` (name ``volume-V``):

    iscsi/<prefix>volume-V/tpgt_1/{attrib,param,np/<ip:port>,lun/lun_0,acls/<initiator>}
    core/<fileio|iblock>_<index>/volume-V       (the storage object)

A node (a folder) is named by one of the functions below; an attribute of it
by its name under the node (``put(so, "wwn/vpd_unit_serial", ...)``), as
rtslib's objects name theirs. rtslib objects (backend.py, converge.py) find
the same folders from the same root.

Storage objects sit at a backstore (HBA) index derived from the prefix and
the volume id, so finding one is a few stat() calls whatever the number of
exports, and never needs rtslib's backstore cache (a walk over all of
core/ that goes stale across processes). Paths are plain strings and the
probes plain os calls: building pathlib objects costs more than the stat()s
in a slow guest.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from iscsiattach.exception import TargetError
from iscsiattach.model import VOLUME_RE, BackingKind, Portal
from iscsiattach.secret import Secret

LOG = logging.getLogger(__name__)

ROOT = "/sys/kernel/config/target"
CONFIGFS = Path(ROOT)
FABRIC = f"{ROOT}/iscsi"
CORE = f"{ROOT}/core"
TPG_TAG = 1
# Backstore (HBA) indexes we use: the upper half of rtslib's range, which
# rtslib/targetcli (lowest free index first) reach only past 2**19 objects.
HBA_BASE = 1 << 19
HBA_SPAN = 1 << 19
# Slots probed per volume: a hash collision moves to the next slot. Eight
# slots all taken at 10,000 volumes has odds near 1e-14.
HBA_PROBE = 8
# An attribute's value is at most a page (the kernel's show() buffer).
ATTR_MAX = 4096
DIRPREFIX = {BackingKind.FILE: "fileio", BackingKind.BLOCK: "iblock"}
KIND_OF_DIR = {v: k for k, v in DIRPREFIX.items()}


def hba_slots(prefix: str, volume_id: str) -> list[int]:
    """Backstore indexes where this volume's storage object may live.

    The prefix is hashed in, so backends with different prefixes on one node
    never find (or remove) each other's storage objects.
    """
    digest = hashlib.sha256(f"{prefix}\0{volume_id}".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % HBA_SPAN
    return [HBA_BASE + (start + i) % HBA_SPAN for i in range(HBA_PROBE)]


# -- where things are ---------------------------------------------------------
def target_dir(iqn: str) -> str:
    return f"{FABRIC}/{iqn}"


def tpg_dir(iqn: str) -> str:
    return f"{target_dir(iqn)}/tpgt_{TPG_TAG}"


def np_dir(tpg: str, portal: Portal) -> str:
    return f"{tpg}/np/{portal.name}"


def lun0_dir(tpg: str) -> str:
    return f"{tpg}/lun/lun_0"


def acl_dir(tpg: str, initiator: str) -> str:
    return f"{tpg}/acls/{initiator}"


def mapped_lun0_dir(acl: str) -> str:
    return f"{acl}/lun_0"


def hba_dir(kind: BackingKind, index: int) -> str:
    return f"{CORE}/{DIRPREFIX[kind]}_{index}"


def so_dir(kind: BackingKind, index: int, name: str) -> str:
    return f"{hba_dir(kind, index)}/{name}"


def _hba_of(folder_name: str) -> tuple[BackingKind, int] | None:
    """``fileio_7`` -> (FILE, 7); None for a backstore kind we never make."""
    dirp, _, index = folder_name.rpartition("_")
    kind = KIND_OF_DIR.get(dirp)
    return (kind, int(index)) if kind and index.isdigit() else None


# -- reads --------------------------------------------------------------------
def is_dir(path: str) -> bool:
    return os.path.isdir(path)


def has_children(path: str) -> bool:
    """An HBA folder always holds attribute files; storage objects are folders."""
    return any(entry.is_dir() for entry in os.scandir(path))


def read(node: str, attr: str) -> str:
    """An attribute of ``node``, stripped (as rtslib reads them).

    One open, one read, one close: the kernel hands an attribute over in
    one read of at most a page, and Python's open() adds four system calls
    (fstat, ioctl, lseek, a second read) that cost more than the read in a
    slow guest, where the steady reconcile pass makes thousands.
    """
    fd = os.open(f"{node}/{attr}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, ATTR_MAX).decode(errors="replace").strip()
    finally:
        os.close(fd)


def read_auth(acl: str, name: str) -> str:
    """One of the ACL's CHAP values; configfs shows an unset one as "NULL"."""
    value = read(acl, f"auth/{name}")
    return "" if value == "NULL" else value


def portal_names(tpg: str) -> list[str]:
    return os.listdir(f"{tpg}/np")


def mapped_luns(acl: str) -> dict[int, str]:
    """An ACL's mapped LUNs: number -> folder."""
    return {int(e.name[4:]): e.path for e in os.scandir(acl)
            if e.is_dir() and e.name.startswith("lun_")}


def write_protected(mapped_lun: str) -> bool:
    return read(mapped_lun, "write_protect") == "1"


def lun_storage_object(lun: str) -> tuple[BackingKind, int, str] | None:
    """Kind, backstore index and name of the storage object a LUN links to."""
    if not os.path.isdir(lun):
        return None
    for entry in os.scandir(lun):
        if entry.is_symlink():
            # The link's own text ends in core/<hba>/<name>: one readlink,
            # where realpath() would lstat every folder on the way.
            parts = os.readlink(entry.path).rstrip("/").split("/")
            hba = _hba_of(parts[-2]) if len(parts) >= 2 else None
            return (*hba, parts[-1]) if hba else None
    return None


def find_storage_object(prefix: str, volume_id: str, name: str
                        ) -> tuple[BackingKind, int] | None:
    for index in hba_slots(prefix, volume_id):
        for kind in DIRPREFIX:
            if os.path.isdir(so_dir(kind, index, name)):
                return kind, index
    return None


def volume_ids(prefix: str, backstores: bool = True) -> set[str]:
    """Volumes with a target or (``backstores``) a storage object of ours
    (a walk: reconciler only)."""
    ours: set[str] = set()
    head = prefix + "volume-"
    for entry in os.scandir(FABRIC):
        if entry.name.startswith(head):
            m = VOLUME_RE.match(entry.name[len(prefix):])
            if m:
                ours.add(m.group(1))
    if not backstores:
        return ours
    for hba in os.scandir(CORE):
        found = _hba_of(hba.name)
        if found and found[1] >= HBA_BASE:
            for so in os.scandir(hba.path):
                m = VOLUME_RE.match(so.name)
                if m and found[1] in hba_slots(prefix, m.group(1)):
                    ours.add(m.group(1))
    return ours


# -- writes -------------------------------------------------------------------
def put(node: str, attr: str, value: str) -> None:
    with open(f"{node}/{attr}", "w") as f:
        f.write(value)


def mkdir(path: str) -> None:
    os.mkdir(path)


def link(source: str, folder: str) -> None:
    # The link's name is free; rtslib names it with 10 characters of a uuid.
    os.symlink(source, f"{folder}/{uuid.uuid4().hex[:10]}")


def free_hba_slot(prefix: str, volume_id: str, kind: BackingKind) -> int | None:
    for index in hba_slots(prefix, volume_id):
        hba = hba_dir(kind, index)
        if os.path.isdir(hba) and not has_children(hba):
            os.rmdir(hba)       # left empty by a crash; rtslib would refuse it
        if not os.path.isdir(hba):
            return index
    return None


def claim_storage_object(so: str) -> None:
    """The backstore folder (which must not exist: one object per backstore,
    as rtslib makes them) and the storage object's folder in it: from here
    on the slot is taken (the kernel refuses a second mkdir)."""
    os.mkdir(os.path.dirname(so))
    os.mkdir(so)


def remove_storage_object(so: str) -> None:
    """The storage object and its backstore, if now empty. The kernel refuses
    (EBUSY) while anything still links to it."""
    hba = os.path.dirname(so)
    os.rmdir(so)
    if not has_children(hba):
        os.rmdir(hba)


def remove_if_unlinked(mapped_lun: str) -> None:
    """A mapped LUN's folder without its link: a crash between mkdir and symlink."""
    if os.path.isdir(mapped_lun) and not any(e.is_symlink() for e in os.scandir(mapped_lun)):
        os.rmdir(mapped_lun)


# -- CHAP -----------------------------------------------------------------------
def set_secret(write: Callable[[str], None], want: Secret, what: str,
               errors: tuple[type[Exception], ...] = (OSError,)) -> None:
    """Write one CHAP value with ``write``. It stays a Secret in every frame
    here, and the error (one of ``errors``) is raised outside the handler, so
    neither a traceback's locals nor its chained exception can carry it."""
    try:
        write(want.reveal())
        return
    except errors as exc:
        why = errno.errorcode.get(getattr(exc, "errno", None) or 0, "refused by the kernel")
    raise TargetError(f"setting {what}: {why}")


def put_secret(acl: str, name: str, want: Secret, what: str) -> None:
    """One of the ACL's CHAP values (``userid``, ``password``, ...)."""
    set_secret(lambda value: put(f"{acl}/auth", name, value), want, what)


def hide_secrets(acl: str) -> None:
    """configfs shows CHAP passwords to every local user (0644): make them
    root-only. configfs keeps the mode for as long as the ACL exists."""
    for name in ("password", "password_mutual"):
        path = f"{acl}/auth/{name}"
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError as exc:
            LOG.warning("cannot make %s root-only: %s", path, exc.strerror)


def require_acl_auth(acl: str) -> None:
    """Newer kernels let one ACL override the TPG's authentication flag; pin
    it on so no ACL can admit an initiator without CHAP."""
    flag = f"{acl}/attrib/authentication"
    if os.path.isfile(flag):
        with open(flag) as f:
            if f.read().strip() == "1":
                return
        put(acl, "attrib/authentication", "1")
