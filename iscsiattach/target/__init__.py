"""The kernel target: one interface (base), LIO (lio) and an in-memory fake (fake)."""
from iscsiattach.target.base import DEFAULT_PREFIX, Drift, TargetBackend, compute_drift
from iscsiattach.target.model import (
    AclState, Backing, BackingKind, ChapCredentials, ExportInfo, ExportSpec,
    ExportState, Grant, Portal)

__all__ = ["DEFAULT_PREFIX", "Drift", "TargetBackend", "compute_drift", "AclState",
           "Backing", "BackingKind", "ChapCredentials", "ExportInfo", "ExportSpec",
           "ExportState", "Grant", "Portal"]
