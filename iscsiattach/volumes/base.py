"""Volume backends: where a volume's bytes live.

A backend makes, grows and destroys the storage of one volume and says how
the target reaches it (a ``Backing``). It knows nothing of attachments or
LIO; the service records ``location`` (what ``create`` returned) durably and
passes it back. Every method is idempotent: creating what exists with the
same size returns it, deleting what is gone succeeds.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

from iscsiattach.exception import InvalidInput
from iscsiattach.model import Backing, BackingKind

GIB = 1 << 30
# The default ceiling of a volume's size (16 TiB), [volumes] max_size_gib.
DEFAULT_MAX_SIZE_GIB = 16384


@dataclass(frozen=True)
class Provisioned:
    location: str        # file path, LV path or device path; stored by the service
    backing: Backing     # how the target exports it
    size_gib: int


class VolumeBackend(abc.ABC):
    name: str
    backing_kind: BackingKind = BackingKind.BLOCK
    # Whether create, extend and check_exportable want ``others``: volume id
    # -> stored location of each other volume of this backend, so that one
    # device is never two volumes. The service reads the store for it only
    # then; a backend never reads the store itself.
    needs_other_locations: bool = False

    def backing(self, location: str, size_gib: int) -> Backing:
        """How the target reaches a volume, from what the store recorded.

        No I/O: an export or a reconcile pass must not run a tool (lvs) per
        volume. A backing that vanished is refused by the target itself.
        """
        if self.backing_kind is BackingKind.FILE:
            return Backing(BackingKind.FILE, location, size_gib * GIB)
        return Backing(BackingKind.BLOCK, location)

    def location_for(self, volume_id: str, source: str | None = None) -> str:
        """Where ``create`` will put the volume, known before it runs, so the
        service can record it first and a crash never loses track of storage."""
        raise NotImplementedError

    def check_exportable(  # noqa: B027 - a hook: by default there is nothing to check
            self, location: str, others: Mapping[str, str] | None = None) -> None:
        """Refuse (InvalidInput) to export what ``location`` leads to now.

        Called before an export is made or repaired, not on every reconcile
        comparison (that is ``backing``). Storage a backend made itself (a
        file, an LV) has nothing to check; a registered device does.
        """

    @abc.abstractmethod
    def create(self, volume_id: str, size_gib: int, source: str | None = None,
               others: Mapping[str, str] | None = None) -> Provisioned:
        """Make the storage (file/lvm) or register ``source`` (block)."""

    @abc.abstractmethod
    def extend(self, volume_id: str, location: str, new_size_gib: int,
               others: Mapping[str, str] | None = None) -> Provisioned:
        """Grow to ``new_size_gib`` (never shrink)."""

    @abc.abstractmethod
    def delete(self, volume_id: str, location: str) -> None:
        """Discard the data (file/lvm); forget a registered device (block)."""

    @abc.abstractmethod
    def provisioned(self, volume_id: str, location: str) -> Provisioned | None:
        """What exists now at ``location``, or None if it is gone."""


def validate_size_gib(size: object, max_gib: int | None = DEFAULT_MAX_SIZE_GIB) -> int:
    """A size in whole GiB: an int (not a bool) from 1 to ``max_gib``.

    Backends pass ``max_gib=None`` (shape only): the configured ceiling is
    the service's to enforce, on the request.
    """
    # bool is an int subclass; True must not mean 1 GiB.
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 \
            or (max_gib is not None and size > max_gib):
        limit = f"1-{max_gib}" if max_gib is not None else "at least 1"
        raise InvalidInput(f"invalid size {size!r}: expected a whole number of GiB, {limit}")
    return size


def require_location(location: object, expected: str) -> str:
    """The backend derives a volume's location from its id; a stored location
    that disagrees is corrupt and must not steer a grow or a delete."""
    if location != expected:
        raise InvalidInput(f"invalid location {location!r}: expected {expected}")
    return expected
