"""The kernel target: one interface (base), LIO (lio) and an in-memory fake
(fake). The values that cross the interface live in ``iscsiattach.model``."""
from iscsiattach.targets.base import DEFAULT_PREFIX, Drift, TargetBackend, compute_drift

__all__ = ["DEFAULT_PREFIX", "Drift", "TargetBackend", "compute_drift"]
