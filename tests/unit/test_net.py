"""Portals from addresses and interface names (pyroute2, on the real host)."""
from __future__ import annotations

import pytest

from iscsiattach.exception import InvalidInput
from iscsiattach.net import resolve_portals
from iscsiattach.target import Portal


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
