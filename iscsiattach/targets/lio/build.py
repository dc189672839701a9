"""New LIO objects written straight into configfs (through configfs.py).

``configure_storage_object`` (after ``configfs.claim_storage_object``):
every storage object we make, by the converge and the restore alike.
``build_target``: the restore's fast path, for a volume of which LIO holds
nothing: the target, its TPG (closed, then enabled last), portals, LUN 0
and one ACL per grant (mapped LUN 0, CHAP), at the paths configfs.py computes.

Plain mkdir/symlink/write, no rtslib objects: those re-check their own
folder with pathlib on every attribute they touch (about sixty stat()s per
export), and each new storage object builds an ``RTSRoot`` to find the
persistent-reservation files; in the slow guest that cost more than the
kernel work itself. The kernel ABI and the order of the writes are the ones
rtslib-fb uses for the same objects; rtslib still reads them (converge.py).
"""
from __future__ import annotations

import errno
import os

from iscsiattach import failpoints
from iscsiattach.exception import InvalidInput
from iscsiattach.model import SECURE_TPG_ATTRIBUTES, Backing, BackingKind, Grant, Portal
from iscsiattach.secret import Secret
from iscsiattach.targets.base import AUTH_METHOD
from iscsiattach.targets.lio import configfs


def configure_storage_object(so: str, backing: Backing, serial: str, *,
                             write_back: bool, dbroot: str) -> None:
    """The storage object in its claimed folder. A regular file is
    asynchronous fileio, which the kernel does as direct I/O, or (where the
    backing says so: a filesystem without direct I/O) fileio through the
    page cache. ``write_back``: the LUN reports a volatile write cache and
    honours SYNCHRONIZE CACHE, like any disk with a cache; without it every
    write is synchronous (O_DSYNC). A block device is iblock, opened
    exclusively by the kernel. The caller removes what is there if this
    raises part way."""
    put = configfs.put
    if backing.kind is BackingKind.FILE:
        put(so, "control", f"fd_dev_name={backing.path},fd_dev_size={backing.size}")
        if write_back:
            put(so, "attrib/emulate_write_cache", "1")
            put(so, "control", "fd_buffered_io=1")
        if backing.direct_io:
            put(so, "control", "fd_async_io=1")
        put(so, "udev_path", backing.path)
    else:
        put(so, "udev_path", backing.path)
        put(so, "control", f"udev_path={backing.path}")
        put(so, "control", "readonly=0")
        put(so, "control", "exclusive=1")   # kernels before 6.17 ignore it: always exclusive
    put(so, "enable", "1")
    put(so, "wwn/vpd_unit_serial", f"{serial}\n")
    restore_reservations(so, dbroot, serial)


def ensure_reservation_dir(dbroot: str) -> None:
    """The folder the kernel writes persistent reservations made with APTPL
    into (``<dbroot>/pr/aptpl_<serial>``): it never makes it, and without it
    such a PERSISTENT RESERVE OUT fails. Its files hold reservation keys:
    0700, root's."""
    path = os.path.join(dbroot, "pr")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def restore_reservations(so: str, dbroot: str, serial: str) -> None:
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
                configfs.put(so, "pr/res_aptpl_metadata", ",".join(registration))
            registration = None
        elif line and registration is not None:
            registration.append(line)


def check_direct_io(path: str) -> None:
    """Async fileio does direct I/O; refuse a file whose filesystem cannot
    (tmpfs before Linux 6.6) when the backing asks for it."""
    if not supports_direct_io(path):
        raise InvalidInput(f"backing {path} is on a filesystem without direct I/O "
                           "(such as tmpfs); asynchronous fileio needs it") from None


def supports_direct_io(path: str) -> bool:
    """Whether ``path`` (an existing file) opens with O_DIRECT."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    return True


def build_target(iqn: str, portals: tuple[Portal, ...], so: str,
                 grants: list[Grant]) -> None:
    """The target ``iqn`` with everything under it; the caller removes the
    whole target if this raises part way."""
    configfs.mkdir(configfs.target_dir(iqn))
    tpg = configfs.tpg_dir(iqn)
    configfs.mkdir(tpg)
    # A new TPG starts open: closed before anything else, enabled last.
    for name, want in SECURE_TPG_ATTRIBUTES.items():
        configfs.put(tpg, f"attrib/{name}", want)
    configfs.put(tpg, "param/AuthMethod", AUTH_METHOD)
    for portal in portals:
        configfs.mkdir(configfs.np_dir(tpg, portal))
    lun = configfs.lun0_dir(tpg)
    configfs.mkdir(lun)
    configfs.link(so, lun)
    for grant in grants:
        _build_acl(configfs.acl_dir(tpg, grant.initiator), lun, grant)
        failpoints.point("lio.restore.after_acl")
    failpoints.point("lio.restore.before_enable")
    configfs.put(tpg, "enable", "1")


def _build_acl(acl: str, lun: str, grant: Grant) -> None:
    configfs.mkdir(acl)
    # Mapping first: an ACL without CHAP admits nobody yet, and the mapping
    # starts write-protected (prod_mode_write_protect=1).
    mapped = configfs.mapped_lun0_dir(acl)
    configfs.mkdir(mapped)
    configfs.link(lun, mapped)
    configfs.put(mapped, "write_protect", "1" if grant.read_only else "0")
    configfs.hide_secrets(acl)          # before a secret is in them
    chap = grant.chap
    values = [("userid", Secret(chap.userid)), ("password", chap.password)]
    if chap.mutual_userid is not None and chap.mutual_password is not None:    # mutual
        values += [("userid_mutual", Secret(chap.mutual_userid)),
                   ("password_mutual", chap.mutual_password)]
    for name, want in values:
        configfs.put_secret(acl, name, want, f"{name} for {grant.initiator}")
    configfs.require_acl_auth(acl)
