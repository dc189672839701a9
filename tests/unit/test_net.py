"""Portals from addresses and interface names (pyroute2, on the real host)."""
from __future__ import annotations

import pytest

from iscsiattach.exception import InvalidInput
from iscsiattach.model import Portal
from iscsiattach.net import resolve_portals


def test_addresses_and_interface_names():
    portals = resolve_portals(["10.0.0.5", "[fd00::5]:3261", "lo:3262"], 3260)
    assert Portal("10.0.0.5", 3260) in portals and Portal("fd00::5", 3261) in portals
    assert Portal("127.0.0.1", 3262) in portals


def test_duplicates_collapse():
    assert resolve_portals(["127.0.0.1", "lo"], 3260).count(Portal("127.0.0.1")) == 1


@pytest.mark.parametrize("entry", ["no-such-if0", "eth0:port", "bad name", ""])
def test_unknown_interfaces_and_junk_refused(entry):
    with pytest.raises(InvalidInput):
        resolve_portals([entry], 3260)


@pytest.mark.parametrize("entry, reason", [
    ("10.0.0.1:99999", "invalid portal port 99999: expected 1-65535"),
    ("[fd00::5]:x", "invalid portal '[fd00::5]:x'"),
    ("224.0.0.1", "invalid portal address '224.0.0.1': multicast"),
])
def test_an_address_with_a_bad_port_is_not_taken_for_an_interface(entry, reason):
    with pytest.raises(InvalidInput) as err:
        resolve_portals([entry], 3260)
    assert str(err.value) == reason
