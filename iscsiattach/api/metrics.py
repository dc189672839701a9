"""Prometheus metrics and the health document, served at /metrics and /healthz.

Counts come from the store (what is wanted), so a scrape costs O(volumes) in
SQLite; the one figure read from configfs is the sessions per exported volume
(one read per ACL), when the metrics are given the session lister. Neither
endpoint shows a secret.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from iscsiattach.attachments.desired import connected
from iscsiattach.attachments.reconciler import Report
from iscsiattach.attachments.sessions import SessionLister
from iscsiattach.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, store: Store, sessions: SessionLister | None = None) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        r = self.registry
        self.operations = Counter("iscsiattach_operations", "API operations by kind and outcome",
                                  ["kind", "outcome"], registry=r)
        self.latency = Histogram("iscsiattach_operation_seconds", "API operation latency",
                                 ["kind"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.reconcile_runs = Counter("iscsiattach_reconcile_runs", "Reconcile runs", registry=r)
        self.reconcile_repairs = Counter("iscsiattach_reconcile_repairs",
                                         "Repairs made by the reconciler", registry=r)
        self.reconcile_drift = Counter("iscsiattach_reconcile_drift",
                                       "Differences the reconciler found", registry=r)
        self.reconcile_errors = Counter("iscsiattach_reconcile_errors",
                                        "Volumes the reconciler could not repair", registry=r)
        self.reconcile_cpu = Counter("iscsiattach_reconcile_cpu_seconds",
                                     "CPU time of the reconciler's runs (its rate is the "
                                     "share of a CPU the reconciler takes)", registry=r)
        self.last_reconcile = Gauge("iscsiattach_reconcile_last_timestamp_seconds",
                                    "When the last reconcile finished", registry=r)
        self.lio_lock_wait = Histogram("iscsiattach_lio_lock_wait_seconds",
                                       "Time spent waiting for LIO locks (a volume's, or "
                                       "the shared one)", registry=r,
                                       buckets=(.001, .005, .01, .05, .1, .5, 1, 5, 30))
        r.register(_StoreCollector(store))
        if sessions is not None:
            r.register(_SessionCollector(sessions))
        self._lock = threading.Lock()
        self.ready = False
        self.last_report: Report | None = None
        self.last_report_at: dt.datetime | None = None

    def observe(self, kind: str, status: int, seconds: float) -> None:
        outcome = "success" if status < 400 else ("client_error" if status < 500 else "error")
        self.operations.labels(kind, outcome).inc()
        self.latency.labels(kind).observe(seconds)

    def reconciled(self, report: Report) -> None:
        with self._lock:
            self.reconcile_runs.inc()
            self.reconcile_repairs.inc(report.changed)
            self.reconcile_drift.inc(report.drift_found)
            self.reconcile_errors.inc(len(report.errors))
            self.reconcile_cpu.inc(report.cpu_seconds)
            self.last_reconcile.set_to_current_time()
            self.last_report = report
            self.last_report_at = dt.datetime.now(dt.UTC)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> dict[str, Any]:
        report, at = self.last_report, self.last_report_at
        return {
            "ready": self.ready,
            "last_reconcile": None if report is None or at is None else {
                "at": at.isoformat(), "seconds": round(report.seconds, 3),
                "cpu_seconds": round(report.cpu_seconds, 3),
                "fully_compared": report.fully_compared,
                "volumes_checked": report.volumes_checked, "drift_found": report.drift_found,
                "repairs": report.changed, "errors": len(report.errors)},
            "counts": counts(self.store),
        }


def counts(store: Store) -> dict[str, int]:
    volumes = store.volumes()
    attachments = store.attachments()
    live = connected(attachments)
    return {"volumes": len(volumes), "attachments": len(attachments),
            "exports": len({a.volume_id for a in live}),
            "acls": len({(a.volume_id, a.initiator) for a in live})}


class _SessionCollector:
    def __init__(self, sessions: SessionLister) -> None:
        self.sessions = sessions

    def collect(self):
        g = GaugeMetricFamily("iscsiattach_sessions",
                              "iSCSI sessions logged in to each exported volume's target "
                              "(read from the target)", labels=["volume_id"])
        for vid, sessions in self.sessions.by_volume().items():
            g.add_metric([vid], len(sessions))
        yield g


class _StoreCollector:
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        for name, value in counts(self.store).items():
            g = GaugeMetricFamily(f"iscsiattach_{name}", f"Number of {name} (from the store)")
            g.add_metric([], value)
            yield g
