"""The Debian package bundles packaging/runtime-lock.txt; the test venv is
installed under the same pins (tools/setup). These checks fail when the lock
and setup.cfg drift apart, or when a version is bumped in one place only."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TOP = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\$")
HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}$")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(TOP / "setup.cfg")
    return cfg


def _lock() -> dict[str, str]:
    """name -> version; every pin must carry exactly one sha256 line."""
    lines = [ln for ln in (TOP / "packaging" / "runtime-lock.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    pins: dict[str, str] = {}
    for pin, digest in zip(lines[::2], lines[1::2], strict=True):
        m = PIN.match(pin)
        assert m, f"runtime-lock.txt: not a pin line: {pin!r}"
        assert HASH.match(digest), f"runtime-lock.txt: {m[1]} has no sha256 line: {digest!r}"
        pins[canonicalize_name(m[1])] = m[2]
    return pins


def _install_requires() -> list[Requirement]:
    raw = _setup_cfg()["options"]["install_requires"]
    return [Requirement(ln.strip()) for ln in raw.splitlines() if ln.strip()]


@pytest.mark.parametrize("req", _install_requires(), ids=str)
def test_each_dependency_is_pinned_inside_its_tested_range(req: Requirement) -> None:
    pins = _lock()
    name = canonicalize_name(req.name)
    assert name in pins, (
        f"{req.name} is in setup.cfg but not in runtime-lock.txt: tools/package --relock")
    assert req.specifier.contains(pins[name]), (
        f"runtime-lock.txt pins {req.name}=={pins[name]}, outside setup.cfg's {req}: "
        "tools/package --relock")


def test_the_project_itself_is_not_in_the_lock() -> None:
    assert "iscsiattach" not in _lock()


def test_changelog_version_is_setup_cfg_version() -> None:
    version = _setup_cfg()["metadata"]["version"]
    first = (TOP / "packaging" / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"^iscsiattach \(([^)]+)\) \w+; urgency=\w+$", first)
    assert m, f"changelog's first line is not an entry: {first!r}"
    assert m[1] == version, f"changelog says {m[1]}, setup.cfg says {version}"


def test_unit_runs_the_packaged_binary() -> None:
    unit = (TOP / "systemd" / "iscsiattachd.service").read_text()
    links = (TOP / "packaging" / "debian" / "iscsiattachd.links").read_text().split()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.M)
    assert exec_start, "the unit has no ExecStart"
    assert exec_start[1].lstrip("/") in links, (
        f"ExecStart runs {exec_start[1]}, which the package does not install")


def _readme_blocks() -> dict[str, str]:
    import sys
    sys.path.insert(0, str(TOP / "tools"))
    try:
        from nodelib.readme import blocks
    finally:
        sys.path.remove(str(TOP / "tools"))
    return blocks(TOP / "README.md")


def test_the_readme_operator_blocks_are_there_for_the_node_suites() -> None:
    assert set(_readme_blocks()) >= {"node-install", "node-configure", "host-install",
                                     "host-attach"}


def test_the_readme_installs_the_packages_of_this_version() -> None:
    """`apt install ./iscsiattach_<version>_amd64.deb` pasted from the README
    must name the file tools/package builds now."""
    version = _setup_cfg()["metadata"]["version"]
    named = re.findall(r"\./(iscsiattachd?)_([^_]+)_amd64\.deb",
                       "\n".join(_readme_blocks().values()))
    assert {p for p, _ in named} == {"iscsiattach", "iscsiattachd"}
    assert {v for _, v in named} == {version}, named
