"""Options of the volume backends, group [volumes], and the backend they make."""
from __future__ import annotations

import os

from oslo_config import cfg

from iscsiattach.exception import InvalidInput
from iscsiattach.volumes.base import DEFAULT_MAX_SIZE_GIB, VolumeBackend
from iscsiattach.volumes.block import BlockBackend
from iscsiattach.volumes.file import FileBackend
from iscsiattach.volumes.lvm import LvmBackend

GROUP = "volumes"

VOLUME_OPTS = [
    cfg.StrOpt("backend", default="file",
               choices=[("file", "sparse files in file_directory, exported through fileio"),
                        ("lvm", ("logical volumes in lvm_volume_group (thin when "
                                 "lvm_thin_pool is set), exported through iblock")),
                        ("block", ("existing block devices registered by path; never "
                                   "created, wiped or written by iscsiattach"))],
               help="Where the bytes of new volumes live."),
    cfg.StrOpt("file_directory",
               help="Directory of the volume files (file backend), created 0700. "
                    "Default: <state_path>/volumes."),
    cfg.StrOpt("file_io", default="auto",
               choices=[("auto", "direct where the directory's filesystem has direct "
                                 "I/O, else page-cache"),
                        ("direct", "the target's asynchronous fileio (direct I/O): no "
                                   "copy of the data in the node's page cache"),
                        ("page-cache", "fileio through the node's page cache, as "
                                       "targetcli's default; the LUN reports a write "
                                       "cache and honours SYNCHRONIZE CACHE when "
                                       "[lio] fileio_write_back is on")],
               help="How the target reads and writes file volumes (file backend). "
                    "Found once per start for auto; volume-show reports it as "
                    "iscsiattach:backstore. tmpfs before Linux 6.6 has no direct I/O."),
    cfg.StrOpt("lvm_volume_group",
               help="Volume group of the logical volumes (lvm backend; required "
                    "then). A thick LV is discarded (blkdiscard) before removal "
                    "where the device supports discard; elsewhere its old bytes "
                    "stay in the freed extents until overwritten."),
    cfg.StrOpt("lvm_thin_pool",
               help="Thin pool in lvm_volume_group: when set, volumes are thin "
                    "LVs in it. Leave the pool's zeroing on (lvm's default) so a "
                    "new volume never reads an old one's data."),
    cfg.ListOpt("block_allowed_prefixes", default=[],
                help="Directories under which a block device may be registered as "
                     "a volume (block backend), e.g. /dev/disk/by-id/ (names that "
                     "stay with their disk across reboots). Empty by default: no "
                     "device may be registered until this or block_allowed_devices "
                     "lists some, and the block backend does not start with both "
                     "empty. A path is matched with '.' and repeated '/' removed; "
                     "'..' is refused. Whichever way a path is allowed, the device "
                     "it leads to (symlinks followed) is refused if it is mounted "
                     "(or a partition of it is), a swap area, held by "
                     "device-mapper, md or LVM, on the root disk, or already "
                     "registered as another volume; checked when it is registered, "
                     "and again before each extend and export."),
    cfg.ListOpt("block_allowed_devices", default=[],
                help="Block devices that may be registered as volumes (block "
                     "backend), e.g. /dev/disk/by-id/wwn-0x5000c500a1b2c3d4. A "
                     "source is allowed when it leads to the same device "
                     "(major:minor) as one of these, by whatever path it names "
                     "it. The refusals of block_allowed_prefixes (mounted, swap, "
                     "held, root disk, registered twice) apply all the same."),
    cfg.IntOpt("max_size_gib", default=DEFAULT_MAX_SIZE_GIB, min=1,
               help="Largest size, in GiB, a volume may be created with or extended to."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(VOLUME_OPTS, group=GROUP)


def backend_from_conf(conf: cfg.ConfigOpts) -> VolumeBackend:
    """The backend [volumes] backend names, built from its options."""
    opts = conf.volumes
    if opts.backend == "file":
        return FileBackend(opts.file_directory or os.path.join(conf.state_path, "volumes"),
                           opts.file_io)
    if opts.backend == "lvm":
        if not opts.lvm_volume_group:
            raise InvalidInput("[volumes] lvm_volume_group must be set when backend = lvm")
        return LvmBackend(opts.lvm_volume_group, opts.lvm_thin_pool or None)
    if opts.backend == "block":
        return BlockBackend(opts.block_allowed_prefixes, opts.block_allowed_devices)
    raise InvalidInput(f"unknown [volumes] backend {opts.backend!r}: expected file, lvm or block")


def check_volume_options(conf: cfg.ConfigOpts) -> None:
    """Refuse [volumes] settings the backend cannot use (InvalidInput).

    Building the backend is the check: its constructor validates every
    option it takes (names, absolute paths) and touches nothing on disk.
    """
    try:
        backend_from_conf(conf)
    except InvalidInput as exc:
        message = str(exc)
        raise InvalidInput(message if message.startswith("[") else
                           f"[volumes] backend = {conf.volumes.backend}: {message}") from None
