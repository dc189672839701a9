"""The reconciler: makes LIO match the store, at start and periodically.

For each volume in the store: finish what a crash cut short (creating,
deleting, extending), compare LIO with what the store wants and converge it
when they differ, and put the volume's status back in line with its
attachments. Then remove exports under our prefix that the store does not
know (orphans).

A pass reads the store once (every volume and attachment) and compares
each volume's LIO state with that snapshot without its lock: most passes
find nothing, and a lock and four queries per volume cost more than the
comparison. Only a volume that looks wrong (drift, a status its rows do
not give, an interrupted operation) is taken under its lock, read again
and repaired there, so a snapshot made stale by a request in flight leads
to a second look, never to a repair. Foreign targets are never seen: the backend lists only
our prefix. Each repair is one log line without secrets.

A restore: when LIO holds nothing under our prefix (after a reboot), there
is nothing to compare, so each export is built straight from the store
(``TargetBackend.restore_export``: no drift reads, one LIO lock per volume),
and a volume's status is written only if it changed. Should something of a
volume appear meanwhile, restore_export() refuses and that volume is
converged as usual. In the daemon's first pass (exclusive: before it serves
the API) volumes are restored by several threads: a restore spends most of
its time waiting in the kernel, and different volumes' restores share nothing
but the backstore slot claim, which the target backend serializes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from oslo_config import cfg

from iscsiattach import failpoints
from iscsiattach.attachments import state as st
from iscsiattach.attachments.desired import Converger, stored_location
from iscsiattach.attachments.locks import VolumeLocks
from iscsiattach.attachments.volume_service import VolumeService
from iscsiattach.exception import NotFound
from iscsiattach.store import Attachment, Store, Volume
from iscsiattach.targets import TargetBackend
from iscsiattach.volumes.base import VolumeBackend

LOG = logging.getLogger(__name__)

GROUP = "reconciler"
RESTORE_WORKERS = 4
RECONCILER_OPTS: list[cfg.Opt] = [
    cfg.IntOpt("interval", default=60, min=1,
               help="Seconds between two reconcile runs (one also runs at start). "
                    "Each run compares every volume's export with the store and "
                    "repairs drift; its cost grows with the number of volumes."),
    cfg.IntOpt("full_check_interval", default=600, min=0,
               help="Seconds within which each volume's export is compared with the "
                    "store field by field (CHAP values, backing, serial, portals, "
                    "mapping flags). Each run compares that share of the volumes in "
                    "full and, for the others, what decides access (target, TPG "
                    "enabled, authentication, ACLs, LUN 0), which costs a few reads. "
                    "The first run after a start compares everything. 0, or at most "
                    "the interval: every run compares everything."),
    cfg.IntOpt("restore_workers", default=RESTORE_WORKERS, min=1, max=64,
               help="Threads that rebuild exports when the daemon starts and LIO "
                    "holds nothing of ours (after a reboot). More than a few gain "
                    "nothing: the kernel serializes part of each build."),
]


@dataclass
class Report:
    volumes_checked: int = 0
    drift_found: int = 0            # differences seen, one per Drift
    volumes_repaired: int = 0       # volumes whose LIO state was converged
    orphans_removed: int = 0        # our exports the store does not know
    statuses_fixed: int = 0
    interrupted_resolved: int = 0   # creating / deleting / extending left by a crash
    fully_compared: int = 0         # volumes compared field by field (the rest: outline)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0        # the pass's own thread (a restore's workers not counted)

    def add(self, other: Report) -> None:
        """Count ``other``'s findings in (not its time)."""
        for f in fields(self):
            if f.name == "errors":
                self.errors.extend(other.errors)
            elif f.name not in ("seconds", "cpu_seconds"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def changed(self) -> int:
        return (self.volumes_repaired + self.orphans_removed + self.statuses_fixed
                + self.interrupted_resolved)


class Reconciler:
    def __init__(self, store: Store, locks: VolumeLocks, converger: Converger,
                 target: TargetBackend, volume_backend: VolumeBackend,
                 volume_service: VolumeService,
                 restore_workers: int = RESTORE_WORKERS, full_every: int = 1) -> None:
        self.store, self.locks, self.converger = store, locks, converger
        self.target, self.volume_backend = target, volume_backend
        self.volume_service = volume_service
        self.restore_workers = restore_workers
        # Runs over which every volume gets one full comparison; the first
        # run of a process compares every volume in full.
        self.full_every = max(1, full_every)
        self._runs = 0
        # The last steady run's store snapshot and the store's generation
        # before it was read: reused while nothing was committed since.
        self._snapshot: tuple[int, list[Volume], dict[str, list[Attachment]]] | None = None

    def run(self, exclusive: bool = False) -> Report:
        """One pass over every volume. ``exclusive``: nothing else changes the
        store during this pass (the daemon's first one, before it serves the
        API), so a restore may read the store once instead of per volume, and
        restore volumes side by side."""
        started, cpu = time.monotonic(), time.thread_time()
        report = Report()
        turn, share = self._runs % self.full_every, 1 if self._runs == 0 else self.full_every
        self._runs += 1
        # One walk of LIO per pass: it tells a restore, and names the orphans
        # (an export made during the pass belongs to a volume the store knows).
        # Storage objects left without a target are looked for once a round:
        # that walk visits every backstore folder on the node.
        exports = self.target.list_exports(backstores=turn == 0)
        restoring = not exports
        if restoring:
            LOG.info("reconcile: LIO holds nothing of ours; building each export from the store")
        if restoring:
            self._snapshot = None
            rows = self._attachments_by_volume() if exclusive else None
            vols = self.store.volumes()
        else:
            vols, rows = self._steady_snapshot()

        def check(vol: Volume) -> Report:
            if not restoring and rows is not None:
                full = share == 1 or _turn_of(vol.id, share) == turn
                return self._look_at_volume(vol, rows.get(vol.id, []), full)
            return self._check_volume(vol, restoring, rows)
        if restoring and rows is not None and self.restore_workers > 1 and len(vols) > 1:
            with ThreadPoolExecutor(self.restore_workers, thread_name_prefix="restore") as pool:
                parts = list(pool.map(check, vols))
        else:
            parts = [check(vol) for vol in vols]
        for part in parts:
            if part is _QUIET_FULL or part is _QUIET_OUTLINE:
                report.volumes_checked += 1
                report.fully_compared += part is _QUIET_FULL
            else:
                report.add(part)
        self._remove_orphans(exports, {vol.id for vol in vols}, report)
        report.seconds = time.monotonic() - started
        report.cpu_seconds = time.thread_time() - cpu
        LOG.info("reconcile: %d volumes, %d drift, %d repaired, %d orphans removed, "
                 "%d statuses fixed, %d interrupted operations resolved, %d errors, "
                 "%d compared in full, %.2fs (%.2fs CPU)",
                 report.volumes_checked, report.drift_found, report.volumes_repaired,
                 report.orphans_removed, report.statuses_fixed, report.interrupted_resolved,
                 len(report.errors), report.fully_compared, report.seconds,
                 report.cpu_seconds)
        return report

    def _look_at_volume(self, vol: Volume, atts: list[Attachment], full: bool) -> Report:
        """One volume against the pass's snapshot, without its lock (in
        full, or its outline); the full check under the lock only if
        something looks wrong."""
        try:
            if not self._looks_wrong(vol, atts, full):
                return _QUIET_FULL if full else _QUIET_OUTLINE
        except Exception as exc:    # noqa: BLE001 - one volume must not stop the pass
            LOG.debug("reconcile: volume %s: a second look after %s", vol.id, exc)
        return self._check_volume(vol, False, None)

    def _looks_wrong(self, vol: Volume, atts: list[Attachment], full: bool) -> bool:
        if vol.status in (st.CREATING, st.DELETING, st.EXTENDING):
            return True
        if vol.status in st.ATTACHABLE and \
                vol.status != st.volume_status_for(a.status for a in atts):
            return True
        return bool(self.converger.drift(vol, atts, peek=True, outline=not full))

    def _check_volume(self, vol: Volume, restoring: bool,
                      rows: dict[str, list[Attachment]] | None) -> Report:
        """One volume, under its lock; what it found, in a report of its own
        (volumes may be checked in several threads)."""
        report = Report(volumes_checked=1, fully_compared=1)
        try:
            with self.locks.lock(vol.id):
                if restoring:
                    self._restore_volume(vol, rows, report)
                else:
                    self._reconcile_volume(vol.id, report)
        except Exception as exc:    # noqa: BLE001 - one volume must not stop the pass
            report.errors.append(f"volume {vol.id}: {exc}")
            LOG.error("reconcile: volume %s: %s", vol.id, exc)
        return report

    def _reconcile_volume(self, volume_id: str, report: Report) -> None:
        try:
            stored = self.store.volume(volume_id)
        except NotFound:
            return                          # deleted meanwhile
        vol = self._resolve_interrupted(stored, report)
        if vol is None:
            return
        drift = self.converger.drift(vol)
        if drift:
            report.drift_found += len(drift)
            for d in drift:
                LOG.warning("reconcile: %s", d)
            failpoints.point("reconcile.before_repair")
            self.converger.converge(vol)
            failpoints.point("reconcile.after_repair")
            report.volumes_repaired += 1
        settled = self.store.settle_volume(vol.id, st.ATTACHABLE, st.volume_status_for)
        if settled:
            _status_fixed(vol, settled, report)

    def _steady_snapshot(self) -> tuple[list[Volume], dict[str, list[Attachment]]]:
        """Every volume and its rows, read again only if something was
        committed since the last read: a quiet node's runs read LIO, not
        the store. (A look that finds a difference reads the store again,
        under the volume's lock, before it repairs anything.)"""
        generation = self.store.generation()
        if self._snapshot is not None and self._snapshot[0] == generation:
            return self._snapshot[1], self._snapshot[2]
        rows = self._attachments_by_volume()
        vols = self.store.volumes()
        self._snapshot = (generation, vols, rows)
        return vols, rows

    def _attachments_by_volume(self) -> dict[str, list[Attachment]]:
        by_volume: dict[str, list[Attachment]] = {}
        for att in self.store.attachments(include_detached=True):
            by_volume.setdefault(att.volume_id, []).append(att)
        return by_volume

    def _restore_volume(self, vol: Volume, rows: dict[str, list[Attachment]] | None,
                        report: Report) -> None:
        """One volume while LIO holds nothing of ours: its export built from
        ``rows`` (read once, before the pass) or, when others may be changing
        the store, from its rows read now, under its lock."""
        if rows is None:
            try:
                vol = self.store.volume(vol.id)
            except NotFound:
                return                      # deleted meanwhile
            atts = self.store.attachments(vol.id, include_detached=True)
        else:
            atts = rows.get(vol.id, [])
        if vol.status in (st.CREATING, st.DELETING, st.EXTENDING):
            self._reconcile_volume(vol.id, report)      # a crash's leftovers: the full path
            return
        if self.converger.restore(vol, atts):
            report.drift_found += 1         # its target was missing
            report.volumes_repaired += 1
            failpoints.point("reconcile.after_restore")
        # Written only if it changed: a write per volume is a commit per volume.
        want = st.volume_status_for(a.status for a in atts)
        if vol.status in st.ATTACHABLE and want != vol.status and \
                self.store.cas_volume(vol.id, [vol.status], status=want):
            _status_fixed(vol, want, report)

    def _resolve_interrupted(self, vol: Volume, report: Report) -> Volume | None:
        if vol.status == st.DELETING:
            LOG.warning("reconcile: finishing the deletion of volume %s", vol.id)
            self.volume_service.finish_delete(vol)
            report.interrupted_resolved += 1
            return None
        if vol.status == st.CREATING:
            # The create was cut short: keep what the backend made, else forget it.
            made = self.volume_backend.provisioned(vol.id, vol.location) \
                if vol.location else None
            report.interrupted_resolved += 1
            if made is None:
                LOG.warning("reconcile: volume %s was never made; removing its record", vol.id)
                if vol.location:    # a create cut short may have left a partial behind
                    self.volume_backend.delete(vol.id, vol.location)
                self.store.remove_volume(vol.id)
                return None
            LOG.warning("reconcile: finishing the creation of volume %s", vol.id)
            self.store.cas_volume(vol.id, [st.CREATING], status=st.AVAILABLE,
                                  size_gib=made.size_gib)
        elif vol.status == st.EXTENDING:
            found = self.volume_backend.provisioned(vol.id, stored_location(vol))
            size = found.size_gib if found else vol.size_gib
            LOG.warning("reconcile: volume %s was being extended; now %d GiB", vol.id, size)
            self.store.cas_volume(vol.id, [st.EXTENDING], size_gib=size)
            self.store.settle_volume(vol.id, [st.EXTENDING], st.volume_status_for)
            report.interrupted_resolved += 1
        if vol.status in (st.CREATING, st.EXTENDING):
            failpoints.point("reconcile.after_interrupted")
        return self.store.volume(vol.id)

    def _remove_orphans(self, exports: list[str], known: set[str], report: Report) -> None:
        for volume_id in exports:
            if volume_id in known:
                continue
            with self.locks.lock(volume_id):
                try:
                    self.store.volume(volume_id)
                    continue                # created since the listing
                except NotFound:
                    pass
                LOG.warning("reconcile: removing orphan export of unknown volume %s", volume_id)
                failpoints.point("reconcile.before_orphan_removal")
                self.target.unexport(volume_id)
                report.orphans_removed += 1


# What a volume found in order reports (most of them, most of the time):
# counted by the pass, never added field by field.
_QUIET_FULL = Report(volumes_checked=1, fully_compared=1)
_QUIET_OUTLINE = Report(volumes_checked=1)


def _turn_of(volume_id: str, share: int) -> int:
    """Which run of ``share`` compares this volume in full: volume ids are
    random (UUIDs), so each run gets about the same number."""
    return int(volume_id.replace("-", "")[:8], 16) % share


def full_check_share(interval: int, full_check_interval: int) -> int:
    """Runs per full comparison of every volume, from the two options."""
    return max(1, full_check_interval // max(1, interval))


def _status_fixed(vol: Volume, status: str, report: Report) -> None:
    LOG.warning("reconcile: volume %s status %s -> %s", vol.id, vol.status, status)
    report.statuses_fixed += 1


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
