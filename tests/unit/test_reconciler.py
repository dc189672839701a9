"""The reconciler against the fake target: reboot, drift, orphans, crashes."""
from __future__ import annotations

import uuid

from iscsiattach.target import Backing, BackingKind, ExportSpec, Portal
from iscsiattach.target.fake import FakeTarget
from tests.unit.test_attachments import A, B, connector, instance


def _two_attached(services):
    vol = services.volumes.create(1, multiattach=True)
    infos = []
    for initiator in (A, B):
        att, info = services.attachments.create(vol.id, instance(), connector(initiator))
        services.attachments.complete(att.id)
        infos.append(info)
    return vol, infos


def test_nothing_to_do_reports_nothing(services):
    _two_attached(services)
    report = services.reconciler.run()
    assert report.changed == 0 and report.drift_found == 0 and report.volumes_checked == 1


def test_reboot_restores_every_export_with_the_same_credentials(services, fake_target):
    vol, infos = _two_attached(services)
    before = fake_target.inspect(vol.id)
    fake_target.targets.clear()                # LIO is empty after a reboot
    fake_target.storage_objects.clear()
    report = services.reconciler.run()
    assert report.volumes_repaired == 1 and report.drift_found >= 1
    after = fake_target.inspect(vol.id)
    assert after == before
    assert after.acls[A].chap.password == infos[0]["auth_password"]


def test_drifted_security_and_chap_are_fixed(services, fake_target):
    vol, _ = _two_attached(services)
    tgt = fake_target.targets[fake_target.target_iqn(vol.id)]
    tgt.tpg_attributes["authentication"] = "0"
    tgt.acls.pop(B)
    report = services.reconciler.run()
    assert report.drift_found == 2 and report.volumes_repaired == 1
    assert services.reconciler.run().drift_found == 0


def test_orphans_of_ours_removed_foreign_left(services, fake_target, tmp_path):
    path = tmp_path / "orphan.img"
    path.write_bytes(b"\0" * 4096)
    orphan = str(uuid.uuid4())
    fake_target.export(ExportSpec(orphan, Backing(BackingKind.FILE, str(path), 4096),
                                  (Portal("127.0.0.1"),)))
    foreign = "iqn.2003-01.org.linux-iscsi.other:volume-" + orphan
    fake_target.targets[foreign] = FakeTarget()
    report = services.reconciler.run()
    assert report.orphans_removed == 1
    assert fake_target.list_exports() == [] and foreign in fake_target.targets


def test_export_without_connected_attachment_is_removed(services, fake_target):
    vol = services.volumes.create(1)
    att, _ = services.attachments.create(vol.id, instance(), connector())
    services.store.cas_attachment(att.id, ["attaching"], status="detached")   # crash mid-delete
    report = services.reconciler.run()
    assert report.volumes_repaired == 1 and fake_target.inspect(vol.id) is None
    assert services.store.volume(vol.id).status == "available"
    assert report.statuses_fixed == 1


def test_interrupted_connect_is_finished(services, fake_target):
    vol = services.volumes.create(1)
    att, info = services.attachments.create(vol.id, instance(), connector())
    fake_target.unexport(vol.id)               # crashed before the kernel was touched
    services.reconciler.run()
    assert fake_target.inspect(vol.id).acls[A].chap.password == info["auth_password"]
    _, again = services.attachments.update(att.id, connector())   # the client's retry
    assert again == info


def test_interrupted_volume_operations_resolved(services):
    made = services.volumes.create(1)                  # storage exists: finished
    services.store.cas_volume(made.id, None, status="creating")
    never = services.volumes.create(1)                 # storage never came: forgotten
    services.volumes.backend.delete(never.id, never.location)
    services.store.cas_volume(never.id, None, status="creating")
    deleting = services.volumes.create(1)
    services.store.cas_volume(deleting.id, None, status="deleting")
    extending = services.volumes.create(1)
    services.store.cas_volume(extending.id, None, status="extending")
    report = services.reconciler.run()
    assert report.interrupted_resolved == 4
    assert [v.id for v in services.volumes.list()] == [made.id, extending.id]
    assert services.store.volume(made.id).status == "available"
    assert services.store.volume(extending.id).status == "available"
    assert not __import__("os").path.exists(deleting.location)


def test_a_volume_being_created_is_not_touched_by_the_reconciler(services, monkeypatch):
    import threading
    real = services.volumes.backend.create
    started, release = threading.Event(), threading.Event()

    def slow_create(vid, size, source=None):
        started.set()
        release.wait(10)
        return real(vid, size, source)
    monkeypatch.setattr(services.volumes.backend, "create", slow_create)
    result = {}
    creator = threading.Thread(target=lambda: result.setdefault("vol", services.volumes.create(1)))
    creator.start()
    assert started.wait(10)
    reconcile = threading.Thread(target=lambda: result.setdefault("report",
                                                                  services.reconciler.run()))
    reconcile.start()
    reconcile.join(0.3)
    assert reconcile.is_alive(), "the reconciler did not wait for the volume's lock"
    release.set()
    creator.join(10)
    reconcile.join(10)
    assert result["vol"].status == "available" and result["vol"].location
    assert result["report"].interrupted_resolved == 0


def test_periodic_runs_survive_a_failing_run(services, monkeypatch):
    import threading
    from iscsiattach.attachments.reconciler import run_periodically
    runs = []
    stop = threading.Event()
    real = services.reconciler.run

    def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run breaks")
        if len(runs) == 3:
            stop.set()
        return real()
    monkeypatch.setattr(services.reconciler, "run", flaky)
    reports = []
    run_periodically(services.reconciler, 0.01, stop, reports.append)
    assert len(runs) == 3 and len(reports) == 2
