"""Where our objects live in LIO's configfs: path arithmetic only, no rtslib.

Storage objects sit at a backstore (HBA) index derived from the prefix and
the volume id, so finding one is a few stat() calls whatever the number of
exports, and never needs rtslib's backstore cache (a walk over all of
core/ that goes stale across processes).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from iscsiattach.model import BackingKind

CONFIGFS = Path("/sys/kernel/config/target")
TPG_TAG = 1
# Backstore (HBA) indexes we use: the upper half of rtslib's range, which
# rtslib/targetcli (lowest free index first) reach only past 2**19 objects.
HBA_BASE = 1 << 19
HBA_SPAN = 1 << 19
# Slots probed per volume: a hash collision moves to the next slot. Eight
# slots all taken at 10,000 volumes has odds near 1e-14.
HBA_PROBE = 8
DIRPREFIX = {BackingKind.FILE: "fileio", BackingKind.BLOCK: "iblock"}
KIND_OF_DIR = {v: k for k, v in DIRPREFIX.items()}
VOLUME_RE = re.compile(r"^volume-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def hba_slots(prefix: str, volume_id: str) -> list[int]:
    """Backstore indexes where this volume's storage object may live.

    The prefix is hashed in, so backends with different prefixes on one node
    never find (or remove) each other's storage objects.
    """
    digest = hashlib.sha256(f"{prefix}\0{volume_id}".encode()).digest()
    start = int.from_bytes(digest[:8], "big") % HBA_SPAN
    return [HBA_BASE + (start + i) % HBA_SPAN for i in range(HBA_PROBE)]


def has_children(path: Path) -> bool:
    """An HBA folder always holds attribute files; storage objects are folders."""
    return any(p.is_dir() for p in path.iterdir())
