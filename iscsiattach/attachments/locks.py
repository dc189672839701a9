"""Per-volume locks: external (file) locks so that every process agrees.

Order is always: a volume's lock, then the target backend's own locks
(LIO's lock of that volume, then its shared one). Nothing takes two volume
locks at once.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from oslo_concurrency import lockutils


class VolumeLocks:
    def __init__(self, lock_path: str | None) -> None:
        self.lock_path = lock_path
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def lock(self, volume_id: str) -> Iterator[None]:
        if self.lock_path:
            with lockutils.lock(f"volume-{volume_id}", lock_file_prefix="iscsiattach-",
                                external=True, lock_path=self.lock_path):
                yield
            return
        with self._guard:
            lk = self._local.setdefault(volume_id, threading.Lock())
        with lk:
            yield
