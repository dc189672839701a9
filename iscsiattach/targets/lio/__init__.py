"""LIO, the kernel's iSCSI target: the only package in iscsiattach that
imports rtslib-fb or touches configfs.

- ``configfs``: where our objects live in LIO's configfs, and every raw read
  and write of it (paths are composed nowhere else);
- ``build``: new objects written straight into configfs (every storage
  object; whole exports in a restore);
- ``converge``: one export's objects converged through rtslib-fb;
- ``backend``: ``LioBackend``, the TargetBackend on top of them.
"""
from iscsiattach.targets.lio.backend import LioBackend

__all__ = ["LioBackend"]
