"""Portal addresses from config: literal addresses, or interface names that
pyroute2 resolves to the addresses the interface has now (the only module
that imports pyroute2)."""
from __future__ import annotations

import ipaddress
import re
import socket

from iscsiattach.exception import InvalidInput
from iscsiattach.model import Portal

_IFNAME = re.compile(r"[A-Za-z0-9_.\-]{1,15}")


def resolve_portals(entries: list[str], default_port: int) -> tuple[Portal, ...]:
    """Each entry is an address ("10.0.0.5", "[fd00::5]:3261") or an
    interface name ("eth1", "bond0.100:3261"), which stands for its global
    and host-scope addresses (link-local ones need a zone the kernel target
    cannot take)."""
    portals: list[Portal] = []
    for entry in entries:
        entry = entry.strip()
        try:
            portals.append(Portal.parse(entry, default_port))
            continue
        except InvalidInput:
            if _is_address(entry):
                raise                   # an address with a bad port, not an interface
        name, _, port = entry.partition(":")
        if not _IFNAME.fullmatch(name) or (port and not port.isdigit()):
            raise InvalidInput(f"invalid portal {entry!r}: not an address or an interface name")
        for address in interface_addresses(name):
            portals.append(Portal(address, int(port) if port else default_port))
    unique = tuple(dict.fromkeys(portals))
    if not unique:
        raise InvalidInput("no portal addresses configured")
    return unique


def _is_address(entry: str) -> bool:
    """"10.0.0.5:99999", "[fd00::5]:x", "fd00::5": written as an address."""
    host = entry.partition(":")[0] if entry.count(":") == 1 else entry
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def interface_addresses(name: str) -> list[str]:
    # Imported here, not at the top: pyroute2 takes longer to import than the
    # rest of the daemon's start on a slow machine, and portals given as
    # addresses (the usual case) never need it.
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)
        if not index:
            raise InvalidInput(f"portal interface {name!r} does not exist on this node")
        found = []
        for msg in ipr.get_addr(index=index[0]):
            addr = ipaddress.ip_address(msg.get_attr("IFA_ADDRESS"))
            if msg["family"] in (socket.AF_INET, socket.AF_INET6) and not addr.is_link_local:
                found.append(addr.compressed)
    if not found:
        raise InvalidInput(f"portal interface {name!r} has no usable address")
    return found
