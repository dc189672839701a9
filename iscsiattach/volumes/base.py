"""Volume backends: where a volume's bytes live.

A backend makes, grows and destroys the storage of one volume and says how
the target reaches it (a ``Backing``). It knows nothing of attachments or
LIO; the service records ``location`` (what ``create`` returned) durably and
passes it back. Every method is idempotent: creating what exists with the
same size returns it, deleting what is gone succeeds.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from iscsiattach.target.model import Backing

GIB = 1 << 30


@dataclass(frozen=True)
class Provisioned:
    location: str        # file path, LV path or device path; stored by the service
    backing: Backing     # how the target exports it
    size_gib: int


class VolumeBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    def create(self, volume_id: str, size_gib: int, source: str | None = None) -> Provisioned:
        """Make the storage (file/lvm) or register ``source`` (block)."""

    @abc.abstractmethod
    def extend(self, volume_id: str, location: str, new_size_gib: int) -> Provisioned:
        """Grow to ``new_size_gib`` (never shrink)."""

    @abc.abstractmethod
    def delete(self, volume_id: str, location: str) -> None:
        """Discard the data (file/lvm); forget a registered device (block)."""

    @abc.abstractmethod
    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        """What exists now at ``location``, or None if it is gone."""
