"""The configfs writes of targets/lio/build.py, recorded (the kernel side is in
tests/functional/test_lio_objects.py)."""
from __future__ import annotations

import pytest

from iscsiattach.model import Backing, BackingKind
from iscsiattach.targets.lio import build, configfs

SERIAL = "5e1a1b2c-0000-4000-8000-000000000001"


@pytest.fixture
def writes(monkeypatch, tmp_path):
    done: list[tuple[str, str]] = []
    monkeypatch.setattr(configfs, "put", lambda node, attr, value: done.append(
        (f"{node}/{attr}".replace(str(tmp_path), ""), value)))
    return done


def _create(tmp_path, backing, write_back=True, dbroot="/nonexistent"):
    so_dir = str(tmp_path / "fileio_7" / "volume-x")
    configfs.claim_storage_object(so_dir)
    build.configure_storage_object(so_dir, backing, SERIAL, write_back=write_back,
                                   dbroot=dbroot)


def test_fileio_is_asynchronous_and_configured_before_it_is_enabled(tmp_path, writes):
    _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30))
    assert writes == [
        ("/fileio_7/volume-x/control", "fd_dev_name=/srv/v.img,fd_dev_size=1073741824"),
        ("/fileio_7/volume-x/attrib/emulate_write_cache", "1"),
        ("/fileio_7/volume-x/control", "fd_buffered_io=1"),
        ("/fileio_7/volume-x/control", "fd_async_io=1"),
        ("/fileio_7/volume-x/udev_path", "/srv/v.img"),
        ("/fileio_7/volume-x/enable", "1"),
        ("/fileio_7/volume-x/wwn/vpd_unit_serial", SERIAL + "\n")]


def test_write_through_when_asked(tmp_path, writes):
    _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30), write_back=False)
    assert not any("emulate_write_cache" in p or "buffered" in v for p, v in writes)
    assert ("/fileio_7/volume-x/control", "fd_async_io=1") in writes


def test_block_device_is_exclusive(tmp_path, writes):
    _create(tmp_path, Backing(BackingKind.BLOCK, "/dev/vg0/v"))
    controls = [v for p, v in writes if p.endswith("/control")]
    assert controls == ["udev_path=/dev/vg0/v", "readonly=0", "exclusive=1"]
    assert writes.index(("/fileio_7/volume-x/enable", "1")) > len(controls)


def test_the_backstore_folder_must_be_new(tmp_path, writes):
    (tmp_path / "fileio_7").mkdir()
    with pytest.raises(FileExistsError):
        _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30))
    assert writes == []


def test_persistent_reservations_are_handed_back(tmp_path, writes):
    pr = tmp_path / "db" / "pr"
    pr.mkdir(parents=True)
    (pr / f"aptpl_{SERIAL}").write_text(
        "PR_REG_START: 0\ninitiator_fabric=iSCSI\ninitiator_node=iqn.a\nsa_res_key=1\n"
        "PR_REG_END: 0\nPR_REG_START: 1\ninitiator_fabric=iSCSI\ninitiator_node=iqn.b\n"
        "sa_res_key=2\nres_holder=1\nPR_REG_END: 1\n")
    _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30),
            dbroot=str(tmp_path / "db"))
    assert [v for p, v in writes if p.endswith("/pr/res_aptpl_metadata")] == [
        "initiator_fabric=iSCSI,initiator_node=iqn.a,sa_res_key=1",
        "initiator_fabric=iSCSI,initiator_node=iqn.b,sa_res_key=2,res_holder=1"]


@pytest.mark.parametrize("content", ["", "garbage\n", "initiator_node=iqn.a\n"])
def test_no_reservations_without_a_well_formed_file(tmp_path, writes, content):
    pr = tmp_path / "db" / "pr"
    pr.mkdir(parents=True)
    (pr / f"aptpl_{SERIAL}").write_text(content)
    _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30),
            dbroot=str(tmp_path / "db"))
    assert not any(p.endswith("res_aptpl_metadata") for p, _ in writes)


@pytest.mark.parametrize("write_back", [True, False])
def test_a_page_cache_backing_is_never_asynchronous(tmp_path, writes, write_back):
    """No fd_async_io: the kernel's asynchronous fileio is direct I/O, which
    a filesystem without it (tmpfs before 6.6) fails on every command."""
    _create(tmp_path, Backing(BackingKind.FILE, "/srv/v.img", 1 << 30, direct_io=False),
            write_back=write_back)
    assert not any("fd_async_io" in v for _, v in writes)
    assert (("/fileio_7/volume-x/control", "fd_buffered_io=1") in writes) == write_back


def test_the_reservations_folder_is_made_0700(tmp_path):
    dbroot = tmp_path / "target"
    dbroot.mkdir()
    build.ensure_reservation_dir(str(dbroot))
    build.ensure_reservation_dir(str(dbroot))          # again: nothing to do
    assert (dbroot / "pr").is_dir() and ((dbroot / "pr").stat().st_mode & 0o777) == 0o700
