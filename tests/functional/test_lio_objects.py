"""Our storage objects are written straight into configfs (targets/lio/build.py): the
kernel must end up with exactly what rtslib-fb makes from the same settings."""
from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from rtslib_fb import BlockStorageObject, FileIOStorageObject

from iscsiattach.model import Backing, BackingKind, ExportSpec, Portal, unit_serial, volume_name
from iscsiattach.targets.lio.configfs import CONFIGFS, DIRPREFIX, hba_slots

TWIN = "iscsiattach-test-twin-"


def _ours(backend, spec: ExportSpec) -> Path:
    backend.export(spec)
    for index in hba_slots(backend.prefix, spec.volume_id):
        so = CONFIGFS / "core" / f"{DIRPREFIX[spec.backing.kind]}_{index}" / volume_name(
            spec.volume_id)
        if so.is_dir():
            return so
    raise AssertionError("our storage object is not where we compute it")


def _settings(so: Path, backing_path: str) -> dict[str, str]:
    """Everything the kernel shows of a storage object, its own names taken
    out: the backing's path and device name, the backstore index, the minor
    number, and the status (ACTIVATED only while a LUN uses it, as ours does)."""
    def plain(text: str) -> str:
        text = text.replace(backing_path, "PATH").replace(Path(backing_path).name, "DEV")
        text = re.sub(r"\bStatus: \w+", "Status: S", text)
        return re.sub(r"\b(ID|Minor): \d+", r"\1: N", text).strip()
    out = {"info": plain((so / "info").read_text()),
           "udev_path": plain((so / "udev_path").read_text()),
           "enable": (so / "enable").read_text().strip()}
    for attr in sorted((so / "attrib").iterdir()):
        out[f"attrib/{attr.name}"] = attr.read_text().strip()
    serial = (so / "wwn" / "vpd_unit_serial").read_text()
    out["serial format"] = re.sub(r":.*", ": S", serial.strip())
    return out


def _twin_of(backend, kind: BackingKind, make_path):
    ours_path, twin_path = make_path(), make_path()
    spec = ExportSpec(str(uuid.uuid4()), Backing(kind, ours_path, *(
        [64 << 20] if kind is BackingKind.FILE else [])), (Portal("127.0.0.1"),))
    ours = _ours(backend, spec)
    name = TWIN + uuid.uuid4().hex[:8]
    if kind is BackingKind.FILE:
        twin = FileIOStorageObject(name, dev=twin_path, size=64 << 20, wwn=str(uuid.uuid4()),
                                   write_back=True, aio=True)
    else:
        twin = BlockStorageObject(name, dev=twin_path, wwn=str(uuid.uuid4()))
    try:
        got = _settings(ours, ours_path)
        want = _settings(Path(twin.path), twin_path)
    finally:
        twin.delete()
    return spec, ours, got, want


def test_fileio_storage_object_is_what_rtslib_makes(backend, make_backing):
    spec, ours, got, want = _twin_of(backend, BackingKind.FILE, lambda: make_backing().path)
    assert got == want
    # What we choose: asynchronous (direct) I/O with a write-back cache.
    assert "Async: 1" in got["info"] and got["attrib/emulate_write_cache"] == "1"
    assert unit_serial(spec.volume_id) in (ours / "wwn" / "vpd_unit_serial").read_text()


@pytest.fixture
def loop_devices(make_backing):
    made: list[str] = []

    def make() -> str:
        made.append(subprocess.run(["losetup", "--find", "--show", make_backing().path],
                                   check=True, capture_output=True, text=True).stdout.strip())
        return made[-1]
    yield make
    for loop in made:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_iblock_storage_object_is_what_rtslib_makes(backend, loop_devices):
    spec, ours, got, want = _twin_of(backend, BackingKind.BLOCK, loop_devices)
    assert got == want
    backend.unexport(spec.volume_id)      # releases the loop device before losetup -d
    assert not ours.exists()
