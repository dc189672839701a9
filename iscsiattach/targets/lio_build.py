"""New LIO objects written straight into configfs.

``claim_storage_object`` then ``configure_storage_object``: every storage
object we make (lio.py; the claim under its LIO lock). ``build_target``: the
restore's fast path, for a volume of which LIO holds nothing: the target, its
TPG (closed, then enabled last), portals, LUN 0 and one ACL per grant (mapped
LUN 0, CHAP), at the paths we compute.

Plain mkdir/symlink/write, no rtslib objects: those re-check their own
folder with pathlib on every attribute they touch (about sixty stat()s per
export), and each new storage object builds an ``RTSRoot`` to find the
persistent-reservation files; in the slow guest that cost more than the
kernel work itself. The kernel ABI and the order of the writes are the ones
rtslib-fb uses for the same objects; rtslib still reads them (lio.py).
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import uuid
from collections.abc import Callable

from iscsiattach.exception import TargetError
from iscsiattach.secret import Secret
from iscsiattach.targets.base import AUTH_METHOD
from iscsiattach.model import (SECURE_TPG_ATTRIBUTES, Backing, BackingKind, Grant,
                                      Portal)

LOG = logging.getLogger(__name__)


def put(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


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


def hide_secrets(auth_dir: str) -> None:
    """configfs shows CHAP passwords to every local user (0644): make them
    root-only. configfs keeps the mode for as long as the ACL exists."""
    for name in ("password", "password_mutual"):
        path = f"{auth_dir}/{name}"
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError as exc:
            LOG.warning("cannot make %s root-only: %s", path, exc.strerror)


def require_acl_auth(acl_dir: str) -> None:
    """Newer kernels let one ACL override the TPG's authentication flag; pin
    it on so no ACL can admit an initiator without CHAP."""
    flag = f"{acl_dir}/attrib/authentication"
    if os.path.isfile(flag):
        with open(flag) as f:
            if f.read().strip() == "1":
                return
        put(flag, "1")


def claim_storage_object(so_dir: str) -> None:
    """The backstore folder (which must not exist: one object per backstore,
    as rtslib makes them) and the storage object's folder in it: from here
    on the slot is taken (the kernel refuses a second mkdir)."""
    os.mkdir(os.path.dirname(so_dir))
    os.mkdir(so_dir)


def configure_storage_object(so_dir: str, backing: Backing, serial: str, *,
                             write_back: bool, dbroot: str) -> None:
    """The storage object in its claimed folder. A regular file is
    asynchronous fileio, which the kernel does as direct I/O: never the
    synchronous (O_DSYNC) kind. ``write_back``: the LUN reports a volatile
    write cache and honours SYNCHRONIZE CACHE, like any disk with a cache.
    A block device is iblock, opened exclusively by the kernel. The caller
    removes what is there if this raises part way."""
    control = f"{so_dir}/control"
    if backing.kind is BackingKind.FILE:
        put(control, f"fd_dev_name={backing.path},fd_dev_size={backing.size}")
        if write_back:
            put(f"{so_dir}/attrib/emulate_write_cache", "1")
            put(control, "fd_buffered_io=1")
        put(control, "fd_async_io=1")
        put(f"{so_dir}/udev_path", backing.path)
    else:
        put(f"{so_dir}/udev_path", backing.path)
        put(control, f"udev_path={backing.path}")
        put(control, "readonly=0")
        put(control, "exclusive=1")     # kernels before 6.17 ignore it: always exclusive
    put(f"{so_dir}/enable", "1")
    put(f"{so_dir}/wwn/vpd_unit_serial", f"{serial}\n")
    restore_reservations(so_dir, dbroot, serial)


def restore_reservations(so_dir: str, dbroot: str, serial: str) -> None:
    """Persistent reservations with APTPL outlive a reboot only in the file
    the kernel keeps under its dbroot: hand them back to the new object."""
    # The kernel writes "PR_REG_START: n", one key=value per line, then
    # "PR_REG_END: n" per registration; it takes each back as one line of
    # comma-separated key=values.
    try:
        with open(f"{dbroot}/pr/aptpl_{serial}") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return
    registration: list[str] | None = None
    for line in lines:
        if line.startswith("PR_REG_START:"):
            registration = []
        elif line.startswith("PR_REG_END:"):
            if registration:
                put(f"{so_dir}/pr/res_aptpl_metadata", ",".join(registration))
            registration = None
        elif line and registration is not None:
            registration.append(line)


def np_name(portal: Portal) -> str:
    """A portal's folder name under np/: ip:port, IPv6 in brackets."""
    return f"[{portal.ip}]:{portal.port}" if portal.is_ipv6 else f"{portal.ip}:{portal.port}"


def _link(source: str, folder: str) -> None:
    # The link's name is free; rtslib names it with 10 characters of a uuid.
    os.symlink(source, f"{folder}/{uuid.uuid4().hex[:10]}")


def build_target(target_dir: str, tpg_tag: int, portals: tuple[Portal, ...],
                 so_path: str, grants: list[Grant]) -> None:
    """The target at ``target_dir`` with everything under it; the caller
    removes the whole target if this raises part way."""
    os.mkdir(target_dir)
    tpg = f"{target_dir}/tpgt_{tpg_tag}"
    os.mkdir(tpg)
    # A new TPG starts open: closed before anything else, enabled last.
    for name, want in SECURE_TPG_ATTRIBUTES.items():
        put(f"{tpg}/attrib/{name}", want)
    put(f"{tpg}/param/AuthMethod", AUTH_METHOD)
    for portal in portals:
        os.mkdir(f"{tpg}/np/{np_name(portal)}")
    lun = f"{tpg}/lun/lun_0"
    os.mkdir(lun)
    _link(so_path, lun)
    for grant in grants:
        _build_acl(f"{tpg}/acls/{grant.initiator}", lun, grant)
    put(f"{tpg}/enable", "1")


def _build_acl(acl: str, lun: str, grant: Grant) -> None:
    os.mkdir(acl)
    # Mapping first: an ACL without CHAP admits nobody yet, and the mapping
    # starts write-protected (prod_mode_write_protect=1).
    os.mkdir(f"{acl}/lun_0")
    _link(lun, f"{acl}/lun_0")
    put(f"{acl}/lun_0/write_protect", "1" if grant.read_only else "0")
    hide_secrets(f"{acl}/auth")         # before a secret is in them
    chap = grant.chap
    values = [("userid", Secret(chap.userid)), ("password", chap.password)]
    if chap.mutual_userid is not None and chap.mutual_password is not None:    # mutual
        values += [("userid_mutual", Secret(chap.mutual_userid)),
                   ("password_mutual", chap.mutual_password)]
    for name, want in values:
        set_secret(functools.partial(put, f"{acl}/auth/{name}"), want,
                   f"{name} for {grant.initiator}")
    require_acl_auth(acl)
