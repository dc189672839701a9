"""Functional tests: real LIO and the real initiator, inside the VM (tools/vm).

They never skip: outside a kernel with LIO the run stops with exit status 3
and says how to run them.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest

from iscsiattach.model import Backing, BackingKind, volume_name
from iscsiattach.targets.lio import LioBackend
from iscsiattach.targets.lio.configfs import CONFIGFS, hba_slots
from iscsiattach.volumes.base import GIB
from tests.contract.target_contract import Tamper
from tests.functional.forkserver import ForkServer
from tests.functional.iscsi import iscsiadm
from tests.functional.logwindow import LogWindow, iscsid_log
from tests.support import scratch

PREFIX = "iqn.2010-10.org.iscsiattach.test:"
SCRATCH = Path("/tmp/iscsiattach-functional")


def pytest_configure(config):
    if not (CONFIGFS / "core").is_dir():
        pytest.exit("functional tests need a kernel with LIO (configfs target): run them "
                    "with tools/test, which boots the VM (tools/vm)", returncode=3)


LOG_WINDOW = pytest.StashKey[LogWindow]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.stash[LOG_WINDOW] = window = LogWindow(iscsid_log())
    try:
        yield
    finally:
        window.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries what LIO and iscsid logged meanwhile."""
    report = (yield).get_result()
    window = item.stash.get(LOG_WINDOW, None)
    if report.failed and window is not None:
        report.sections.append(("kernel log during this test", window.kernel()))
        report.sections.append(("iscsid log during this test", window.iscsid()))


@pytest.fixture(scope="session")
def scratch_fs():
    """An ext4 filesystem for backing files (see tests.support.scratch)."""
    with scratch.scratch_fs(SCRATCH, 8 << 30) as mnt:
        yield mnt


@pytest.fixture
def make_backing(scratch_fs):
    made = []

    def make(size: int = 64 << 20) -> Backing:
        path = scratch.sparse_file(scratch_fs / f"{uuid.uuid4()}.img", size)
        made.append(path)
        return Backing(BackingKind.FILE, str(path), size)
    yield make
    for path in made:
        path.unlink(missing_ok=True)


@pytest.fixture
def backend():
    lio = LioBackend(prefix=PREFIX)
    yield lio
    # Clean up only what this run made: our test prefix, never all of configfs.
    for vid in lio.list_exports():
        lio.unexport(vid)
    for line in iscsiadm("-m", "node", check=False).stdout.splitlines():
        if PREFIX in line:
            portal, iqn = line.split()[0].split(",")[0], line.split()[1]
            iscsiadm("-m", "node", "-T", iqn, "-p", portal, "--logout", check=False)
            iscsiadm("-m", "node", "-T", iqn, "-p", portal, "-o", "delete", check=False)


class LioTamper(Tamper):
    """Edits configfs directly, as an administrator would behind our back."""

    def __init__(self, lio: LioBackend) -> None:
        self.lio = lio

    def _tpg(self, vid) -> Path:
        return CONFIGFS / "iscsi" / self.lio.target_iqn(vid) / "tpgt_1"

    def set_tpg_attribute(self, vid, name, value):
        if name == "authentication" or self._tpg(vid).joinpath("enable").read_text().strip() == "0":
            (self._tpg(vid) / "attrib" / name).write_text(value)
        else:
            # Some flags can only change while the TPG is disabled.
            (self._tpg(vid) / "enable").write_text("0")
            (self._tpg(vid) / "attrib" / name).write_text(value)
            (self._tpg(vid) / "enable").write_text("1")

    def set_auth_method(self, vid, value):
        (self._tpg(vid) / "param" / "AuthMethod").write_text(value)

    def disable_tpg(self, vid):
        (self._tpg(vid) / "enable").write_text("0")

    def set_chap_password(self, vid, initiator, value):
        (self._tpg(vid) / "acls" / initiator / "auth" / "password").write_text(value)

    def remove_portal(self, vid, portal):
        (self._tpg(vid) / "np" / portal.name).rmdir()

    def remove_lun0(self, vid):
        tpg = self._tpg(vid)
        for acl in (tpg / "acls").iterdir():
            mapped = acl / "lun_0"
            if mapped.is_dir():
                for link in mapped.iterdir():
                    if link.is_symlink():
                        link.unlink()
                mapped.rmdir()
        lun = tpg / "lun" / "lun_0"
        for link in lun.iterdir():
            if link.is_symlink():
                link.unlink()
        lun.rmdir()

    def create_foreign_target(self, iqn):
        (CONFIGFS / "iscsi" / iqn / "tpgt_1").mkdir(parents=True)

    def foreign_target_exists(self, iqn):
        return (CONFIGFS / "iscsi" / iqn / "tpgt_1").is_dir()

    def remove_foreign_target(self, iqn):
        path = CONFIGFS / "iscsi" / iqn
        if (path / "tpgt_1").is_dir():
            (path / "tpgt_1").rmdir()
        if path.is_dir():
            path.rmdir()

    def remove_target_only(self, vid):
        target = CONFIGFS / "iscsi" / self.lio.target_iqn(vid)
        self.remove_lun0(vid)
        tpg = target / "tpgt_1"
        (tpg / "enable").write_text("0")
        for acl in (tpg / "acls").iterdir():
            acl.rmdir()
        for np in (tpg / "np").iterdir():
            np.rmdir()
        tpg.rmdir()
        target.rmdir()

    def storage_object_slot(self, vid):
        """The backstore index holding the volume's storage object, or None."""
        for index in hba_slots(self.lio.prefix, vid):
            for dirp in ("fileio", "iblock"):
                if (CONFIGFS / "core" / f"{dirp}_{index}" / volume_name(vid)).is_dir():
                    return index
        return None

    def leftovers(self, vid):
        left = []
        target = CONFIGFS / "iscsi" / self.lio.target_iqn(vid)
        if target.exists():
            left.append(str(target))
        for index in hba_slots(self.lio.prefix, vid):
            for dirp in ("fileio", "iblock"):
                hba = CONFIGFS / "core" / f"{dirp}_{index}"
                if (hba / volume_name(vid)).exists():
                    left.append(str(hba / volume_name(vid)))
                elif hba.is_dir() and not any(p.is_dir() for p in hba.iterdir()):
                    left.append(f"{hba} (empty backstore)")
        return left


@pytest.fixture
def tamper(backend):
    return LioTamper(backend)


@pytest.fixture(scope="session")
def fork_server():
    """One fork server for the session's daemons (tests.functional.forkserver):
    each start is a fresh fork of the same main(), without paying the
    daemon's imports again (about 30 s a start in a TCG guest). The script
    start is exercised by test_secrets_flow and test_dos here, and by the
    package on a booted node (tools/node-vm)."""
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def results_dir() -> Path:
    path = Path(os.environ.get("ISCSIATTACH_RESULTS", "/tmp/iscsiattach-results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def loop_device(scratch_fs):
    """A 3 GiB sparse file on a loop device; the file path too, to grow it."""
    image = scratch.sparse_file(scratch_fs / f"pv-{uuid.uuid4()}.img", 3 * GIB)
    with scratch.loop_device(image) as dev:
        yield dev, image
    image.unlink(missing_ok=True)


@pytest.fixture
def volume_group(loop_device):
    dev, _ = loop_device
    vg = f"iscsiattach-test-{secrets.token_hex(4)}"
    sh("pvcreate", "-q", dev)
    sh("vgcreate", "-q", vg, dev)
    yield vg
    subprocess.run(["vgremove", "-f", vg], check=False, capture_output=True)
    subprocess.run(["pvremove", "-y", dev], check=False, capture_output=True)
