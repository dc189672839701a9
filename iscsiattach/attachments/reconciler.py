"""The reconciler: makes LIO match the store, at start and periodically.

For each volume in the store, under its lock: finish what a crash cut short
(creating, deleting, extending), compare LIO with what the store wants and
converge it when they differ, and put the volume's status back in line with
its attachments. Then remove exports under our prefix that the store does
not know (orphans). Foreign targets are never seen: the backend lists only
our prefix. Each repair is one log line without secrets.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from oslo_config import cfg

from iscsiattach import faults
from iscsiattach.attachments import state as st
from iscsiattach.attachments.desired import Converger
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.attachments.volumes import VolumeService
from iscsiattach.exception import NotFound
from iscsiattach.store import Volume

LOG = logging.getLogger(__name__)

GROUP = "reconciler"
RECONCILER_OPTS = [
    cfg.IntOpt("interval", default=60, min=1,
               help="Seconds between two reconcile runs (one also runs at start). "
                    "Each run compares every volume's export with the store and "
                    "repairs drift; its cost grows with the number of volumes."),
]


@dataclass
class Report:
    volumes_checked: int = 0
    drift_found: int = 0            # differences seen, one per Drift
    volumes_repaired: int = 0       # volumes whose LIO state was converged
    orphans_removed: int = 0        # our exports the store does not know
    statuses_fixed: int = 0
    interrupted_resolved: int = 0   # creating / deleting / extending left by a crash
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return (self.volumes_repaired + self.orphans_removed + self.statuses_fixed
                + self.interrupted_resolved)


class Reconciler:
    def __init__(self, converger: Converger, volumes: VolumeService, locks: VolumeLocks) -> None:
        self.converger, self.volumes, self.locks = converger, volumes, locks
        self.store = converger.store

    def run(self) -> Report:
        started = time.monotonic()
        report = Report()
        known = set()
        for vol in self.store.volumes():
            known.add(vol.id)
            report.volumes_checked += 1
            try:
                with self.locks.lock(vol.id):
                    self._reconcile_volume(vol.id, report)
            except Exception as exc:    # noqa: BLE001 - one volume must not stop the pass
                report.errors.append(f"volume {vol.id}: {exc}")
                LOG.error("reconcile: volume %s: %s", vol.id, exc)
        self._remove_orphans(known, report)
        report.seconds = time.monotonic() - started
        LOG.info("reconcile: %d volumes, %d drift, %d repaired, %d orphans removed, "
                 "%d statuses fixed, %d interrupted operations resolved, %d errors, %.2fs",
                 report.volumes_checked, report.drift_found, report.volumes_repaired,
                 report.orphans_removed, report.statuses_fixed, report.interrupted_resolved,
                 len(report.errors), report.seconds)
        return report

    def _reconcile_volume(self, volume_id: str, report: Report) -> None:
        try:
            vol = self.store.volume(volume_id)
        except NotFound:
            return                          # deleted meanwhile
        vol = self._resolve_interrupted(vol, report)
        if vol is None:
            return
        drift = self.converger.drift(vol)
        if drift:
            report.drift_found += len(drift)
            for d in drift:
                LOG.warning("reconcile: %s", d)
            faults.point("reconcile.before_repair")
            self.converger.converge(vol)
            faults.point("reconcile.after_repair")
            report.volumes_repaired += 1
        settled = self.store.settle_volume(vol.id, st.ATTACHABLE, st.volume_status_for)
        if settled:
            LOG.warning("reconcile: volume %s status %s -> %s", vol.id, vol.status, settled)
            report.statuses_fixed += 1

    def _resolve_interrupted(self, vol: Volume, report: Report) -> Volume | None:
        if vol.status == st.DELETING:
            LOG.warning("reconcile: finishing the deletion of volume %s", vol.id)
            self.volumes.finish_delete(vol)
            report.interrupted_resolved += 1
            return None
        if vol.status == st.CREATING:
            # The create was cut short: keep what the backend made, else forget it.
            made = self.converger.volumes.provisioned(vol.id, vol.location) \
                if vol.location else None
            report.interrupted_resolved += 1
            if made is None:
                LOG.warning("reconcile: volume %s was never made; removing its record", vol.id)
                if vol.location:    # a create cut short may have left a partial behind
                    self.converger.volumes.delete(vol.id, vol.location)
                self.store.remove_volume(vol.id)
                return None
            LOG.warning("reconcile: finishing the creation of volume %s", vol.id)
            self.store.cas_volume(vol.id, [st.CREATING], status=st.AVAILABLE,
                                  size_gib=made.size_gib)
        elif vol.status == st.EXTENDING:
            found = self.converger.volumes.provisioned(vol.id, vol.location)
            size = found.size_gib if found else vol.size_gib
            LOG.warning("reconcile: volume %s was being extended; now %d GiB", vol.id, size)
            self.store.cas_volume(vol.id, [st.EXTENDING], size_gib=size)
            self.store.settle_volume(vol.id, [st.EXTENDING], st.volume_status_for)
            report.interrupted_resolved += 1
        if vol.status in (st.CREATING, st.EXTENDING):
            faults.point("reconcile.after_interrupted")
        return self.store.volume(vol.id)

    def _remove_orphans(self, known: set[str], report: Report) -> None:
        for volume_id in self.converger.target.list_exports():
            if volume_id in known:
                continue
            with self.locks.lock(volume_id):
                try:
                    self.store.volume(volume_id)
                    continue                # created since the listing
                except NotFound:
                    pass
                LOG.warning("reconcile: removing orphan export of unknown volume %s", volume_id)
                faults.point("reconcile.before_orphan_removal")
                self.converger.target.unexport(volume_id)
                report.orphans_removed += 1


def run_periodically(reconciler: Reconciler, interval: float, stop: threading.Event,
                     on_report: Callable[[Report], None] | None = None,
                     run_now: bool = True) -> None:
    """Run now (unless ``run_now`` is false), then every ``interval`` seconds
    until ``stop`` is set. A failed run is logged and retried at the next
    tick: the loop never dies."""
    if not run_now:
        stop.wait(interval)
    while not stop.is_set():
        try:
            report = reconciler.run()
            if on_report:
                on_report(report)
        except Exception:   # noqa: BLE001 - a daemon's background loop must survive
            LOG.exception("reconcile run failed; retrying in %ss", interval)
        stop.wait(interval)
