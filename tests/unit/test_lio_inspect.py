"""targets/lio/inspect.py reads an export as rtslib reports it, from a tree
laid out (and worded) as LIO 6.1 writes it; the kernel side is checked by
tests/functional/test_lio_contract.py through the same backend."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES,
    Backing,
    BackingKind,
    ExportOutline,
    Portal,
)
from iscsiattach.secret import Secret
from iscsiattach.targets.lio import configfs, inspect

IQN = "iqn.2010-10.org.iscsiattach.test:volume-x"
INITIATOR = "iqn.1994-05.com.example:host1"
FILEIO_INFO = ("Status: ACTIVATED  Max Queue Depth: 128  SectorSize: 512  HwMaxSectors: 16384\n"
               "        TCM FILEIO ID: 0        File: /srv/v.img  Size: 1073741824  "
               "Mode: Buffered-WCE Async: 1\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setattr(configfs, "FABRIC", str(tmp_path / "iscsi"))
    monkeypatch.setattr(configfs, "CORE", str(tmp_path / "core"))
    so = tmp_path / "core" / f"fileio_{configfs.HBA_BASE + 3}" / "volume-x"
    _write(so / "udev_path", "/srv/v.img\n")
    _write(so / "info", FILEIO_INFO)
    _write(so / "wwn" / "vpd_unit_serial", "T10 VPD Unit Serial Number: 5e1a-serial\n")
    tpg = tmp_path / "iscsi" / IQN / "tpgt_1"
    _write(tpg / "enable", "1\n")
    for name, value in SECURE_TPG_ATTRIBUTES.items():
        _write(tpg / "attrib" / name, value + "\n")
    _write(tpg / "param" / "AuthMethod", "CHAP\n")
    (tpg / "np" / "127.0.0.1:3260").mkdir(parents=True)
    (tpg / "lun" / "lun_0").mkdir(parents=True)
    # LIO's link text is relative (../../../../../../target/core/...).
    lun0 = tpg / "lun" / "lun_0"
    (lun0 / "0a1b2c3d4e").symlink_to(os.path.relpath(so, lun0))
    acl = tpg / "acls" / INITIATOR
    _write(acl / "lun_0" / "write_protect", "0\n")
    for name, value in (("userid", "user1"), ("password", "s3cret-value-1"),
                        ("userid_mutual", "NULL"), ("password_mutual", "NULL")):
        _write(acl / "auth" / name, value + "\n")
    return tmp_path


def test_an_export_reads_as_rtslib_reports_it(tree):
    state = inspect.export_state("x", IQN)
    assert state is not None and state.tpg_enabled
    assert state.tpg_attributes == SECURE_TPG_ATTRIBUTES
    assert state.auth_method == "CHAP"
    assert state.portals == frozenset({Portal("127.0.0.1", 3260)})
    assert state.lun0_backing == Backing(BackingKind.FILE, "/srv/v.img", 1 << 30)
    assert state.unit_serial == "5e1a-serial"
    acl = state.acls[INITIATOR]
    assert acl.mapped_luns == {0: False}
    assert acl.chap is not None and acl.chap.userid == "user1"
    assert acl.chap.password == Secret("s3cret-value-1") and acl.chap.mutual_userid is None


def test_missing_target_and_missing_tpg(tree):
    assert inspect.export_state("y", IQN.replace("volume-x", "volume-y")) is None
    other = tree / "iscsi" / (IQN + "2")
    other.mkdir()
    state = inspect.export_state("x2", IQN + "2")
    assert state is not None and not state.tpg_enabled and state.acls == {}


def test_an_acl_without_usable_chap_is_none_not_an_error(tree):
    acl = tree / "iscsi" / IQN / "tpgt_1" / "acls" / INITIATOR / "auth"
    (acl / "userid").write_text("NULL\n")
    assert inspect.export_state("x", IQN).acls[INITIATOR].chap is None


def test_a_mutual_secret_without_its_user_is_unusable(tree):
    acl = tree / "iscsi" / IQN / "tpgt_1" / "acls" / INITIATOR / "auth"
    (acl / "password_mutual").write_text("m0tual-secret-22\n")
    assert inspect.export_state("x", IQN).acls[INITIATOR].chap is None


def test_fileio_path_from_info_when_udev_path_is_empty(tree):
    so = tree / "core" / f"fileio_{configfs.HBA_BASE + 3}" / "volume-x"
    (so / "udev_path").write_text("\n")
    assert inspect.export_state("x", IQN).lun0_backing.path == "/srv/v.img"


def test_a_disabled_tpg_and_an_unlinked_lun(tree):
    tpg = tree / "iscsi" / IQN / "tpgt_1"
    (tpg / "enable").write_text("0\n")
    (tpg / "lun" / "lun_0" / "0a1b2c3d4e").unlink()
    state = inspect.export_state("x", IQN)
    assert not state.tpg_enabled and state.lun0_backing is None and state.unit_serial is None


def test_an_absolute_link_names_the_same_storage_object(tree):
    lun0 = tree / "iscsi" / IQN / "tpgt_1" / "lun" / "lun_0"
    link = lun0 / "0a1b2c3d4e"
    target = (lun0 / os.readlink(link)).resolve()
    link.unlink()
    link.symlink_to(target)
    assert configfs.lun_storage_object(str(lun0)) == \
        (BackingKind.FILE, configfs.HBA_BASE + 3, "volume-x")


def test_a_link_outside_any_backstore_is_no_storage_object(tree):
    lun0 = tree / "iscsi" / IQN / "tpgt_1" / "lun" / "lun_0"
    (lun0 / "0a1b2c3d4e").unlink()
    (lun0 / "0a1b2c3d4e").symlink_to("elsewhere")
    assert configfs.lun_storage_object(str(lun0)) is None


def test_a_read_is_the_whole_value_stripped(tree):
    so = tree / "core" / f"fileio_{configfs.HBA_BASE + 3}" / "volume-x"
    assert configfs.read(str(so), "info") == FILEIO_INFO.strip()
    with pytest.raises(FileNotFoundError):
        configfs.read(str(so), "no-such-attribute")


def test_an_outline_is_what_the_full_read_says_of_access(tree):
    outline = inspect.export_outline(IQN)
    assert outline == ExportOutline.of(inspect.export_state("x", IQN))
    assert outline.acls == {INITIATOR} and outline.lun0 and outline.tpg_enabled
    tpg = tree / "iscsi" / IQN / "tpgt_1"
    (tpg / "attrib" / "authentication").write_text("0\n")
    assert inspect.export_outline(IQN).access_attributes["authentication"] == "0"


def test_an_outline_of_a_missing_target_or_tpg(tree):
    assert inspect.export_outline(IQN.replace("volume-x", "volume-y")) is None
    import shutil
    shutil.rmtree(tree / "iscsi" / IQN / "tpgt_1")
    assert inspect.export_outline(IQN) == ExportOutline(False, {}, frozenset(), False)


def test_fileio_without_async_is_page_cache_io(tree):
    so = tree / "core" / f"fileio_{configfs.HBA_BASE + 3}" / "volume-x"
    (so / "info").write_text(FILEIO_INFO.replace("Async: 1", "Async: 0"))
    backing = inspect.export_state("x", IQN).lun0_backing
    assert backing == Backing(BackingKind.FILE, "/srv/v.img", 1 << 30, direct_io=False)
