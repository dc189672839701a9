"""Remove the benchmark's own LIO objects, by IQN prefix and storage-object
name prefix, with plain configfs operations (one pass, no rtslib walk).

Only objects under the given prefixes are touched; nothing else in LIO.
"""
from __future__ import annotations

import os
from pathlib import Path

CONFIGFS = Path("/sys/kernel/config/target")


def _unlink_all(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_symlink():
            entry.unlink()


def _rmdir_children(folder: Path) -> None:
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()


def remove_target(target: Path) -> list[Path]:
    """Tear one target down; returns the storage objects its LUNs used."""
    used: list[Path] = []
    for tpg in target.glob("tpgt_*"):
        (tpg / "enable").write_text("0")
        for acl in (tpg / "acls").iterdir():
            for mapped in acl.glob("lun_*"):
                _unlink_all(mapped)
                mapped.rmdir()
            acl.rmdir()
        for lun in (tpg / "lun").iterdir():
            for link in lun.iterdir():
                if link.is_symlink():
                    used.append(Path(os.path.realpath(link)))
            _unlink_all(lun)
            lun.rmdir()
        _rmdir_children(tpg / "np")
        tpg.rmdir()
    target.rmdir()
    return used


def remove_storage_object(so: Path) -> None:
    if so.is_dir():
        so.rmdir()
    hba = so.parent
    if hba.is_dir() and not any(p.is_dir() for p in hba.iterdir()):
        hba.rmdir()


def cleanup(iqn_prefixes: tuple[str, ...], so_prefixes: tuple[str, ...],
            scan_core: bool = True) -> int:
    """Remove targets whose IQN starts with one of ``iqn_prefixes``, the
    storage objects their LUNs used if named with one of ``so_prefixes``,
    and (``scan_core``) any other storage object so named."""
    removed = 0
    iscsi = CONFIGFS / "iscsi"
    if iscsi.is_dir():
        for target in list(iscsi.iterdir()):
            if target.is_dir() and target.name.startswith(iqn_prefixes):
                for so in remove_target(target):
                    if so.name.startswith(so_prefixes):
                        remove_storage_object(so)
                removed += 1
    for hba in list((CONFIGFS / "core").iterdir()) if scan_core else []:
        if not hba.is_dir():
            continue
        for so in list(hba.iterdir()):
            if so.is_dir() and so.name.startswith(so_prefixes):
                remove_storage_object(so)
                removed += 1
    return removed


def census(iqn_prefixes: tuple[str, ...], so_prefixes: tuple[str, ...]) -> dict[str, int]:
    """How many targets and storage objects LIO holds under these prefixes."""
    iscsi, core = CONFIGFS / "iscsi", CONFIGFS / "core"
    targets = sum(1 for t in iscsi.iterdir() if t.is_dir() and t.name.startswith(iqn_prefixes)) \
        if iscsi.is_dir() else 0
    sos = sum(1 for hba in core.iterdir() if hba.is_dir() for so in hba.iterdir()
              if so.is_dir() and so.name.startswith(so_prefixes)) if core.is_dir() else 0
    return {"targets": targets, "storage_objects": sos}
