"""Layering rules from DESIGN.md that a grep can check."""
from __future__ import annotations

import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "iscsiattach"


def _importers(module: str) -> set[str]:
    pattern = re.compile(rf"^\s*(import|from)\s+{module}\b", re.M)
    return {str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if pattern.search(p.read_text())}


def test_only_lio_imports_rtslib():
    users = _importers("rtslib_fb")
    assert users and all(u.startswith("targets/lio/") for u in users), users


def test_only_lio_touches_configfs():
    # The configfs root is written once, in targets/lio/configfs.py; every
    # other module asks that one for its paths.
    users = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
             if "/sys/kernel/config" in p.read_text()}
    assert users == {"targets/lio/configfs.py"}, users


def test_only_host_side_imports_os_brick():
    assert all(p.startswith("host/") for p in _importers("os_brick"))


def test_nothing_clears_configfs():
    for p in PKG.rglob("*.py"):
        assert "clear_existing" not in p.read_text(), p


def test_only_net_imports_pyroute2():
    assert _importers("pyroute2") == {"net.py"}


def test_only_the_api_package_knows_http():
    http_words = re.compile(r"^\s*(import|from)\s+(wsgiref|http\.|urllib\.request)", re.M)
    users = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if http_words.search(p.read_text())}
    assert all(u.startswith(("api/", "cli/")) for u in users), users
