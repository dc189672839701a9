"""Options of the kernel target, group [lio]."""
from __future__ import annotations

from oslo_config import cfg

from iscsiattach.exception import InvalidInput
from iscsiattach.model import validate_prefix
from iscsiattach.targets.base import DEFAULT_PREFIX

GROUP = "lio"

LIO_OPTS = [
    cfg.StrOpt("target_prefix", default=DEFAULT_PREFIX,
               help="Prefix of every target IQN we create; the volume name "
                    "(volume-<uuid>) follows it. Only targets under this prefix are "
                    "ever changed or removed."),
    cfg.ListOpt("portals", default=["127.0.0.1"],
                help="Where the targets listen: addresses (IPv4 or IPv6, optionally "
                     "with :port, IPv6 in brackets then) or interface names (eth1, "
                     "bond0.100:3261), which stand for the interface's addresses at "
                     "start."),
    cfg.PortOpt("port", default=3260,
                help="TCP port of portals given without one."),
    cfg.BoolOpt("fileio_write_back", default=True,
                help="File-backed LUNs report a volatile write cache and flush it on "
                     "SYNCHRONIZE CACHE (fsync), as a disk with a cache does. When "
                     "false every write is synchronous (O_DSYNC), which is much "
                     "slower. I/O is asynchronous either way."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(LIO_OPTS, group=GROUP)


def portals_from_conf(conf: cfg.ConfigOpts) -> tuple:
    from iscsiattach.net import resolve_portals
    return resolve_portals(conf.lio.portals, conf.lio.port)


def check_lio_options(conf: cfg.ConfigOpts) -> None:
    """Refuse a [lio] setting the target cannot use (InvalidInput), before
    LIO is touched. Portals are resolved as the daemon will resolve them, so
    an interface that does not exist is caught here too."""
    try:
        validate_prefix(conf.lio.target_prefix)
    except InvalidInput as exc:
        raise InvalidInput(f"[lio] target_prefix: {exc}") from None
    try:
        portals_from_conf(conf)
    except InvalidInput as exc:
        raise InvalidInput(f"[lio] portals: {exc}") from None
