"""The reconciler against the fake target: reboot, drift, orphans, crashes."""
from __future__ import annotations

import contextlib
import threading
import uuid

import pytest

from iscsiattach.attachments.wiring import wire_services
from iscsiattach.exception import TargetError
from iscsiattach.model import Backing, BackingKind, ExportSpec, Portal
from iscsiattach.targets.fake import FakeTarget
from iscsiattach.volumes.file import FileBackend
from tests.unit.test_attachments import A, B, connector, instance


def _two_attached(services):
    vol = services.volume_service.create(1, multiattach=True)
    infos = []
    for initiator in (A, B):
        att, info = services.attachment_service.create(vol.id, instance(), connector(initiator))
        services.attachment_service.complete(att.id)
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
    vol = services.volume_service.create(1)
    att, _ = services.attachment_service.create(vol.id, instance(), connector())
    services.store.cas_attachment(att.id, ["attaching"], status="detached")   # crash mid-delete
    report = services.reconciler.run()
    assert report.volumes_repaired == 1 and fake_target.inspect(vol.id) is None
    assert services.store.volume(vol.id).status == "available"
    assert report.statuses_fixed == 1


def test_interrupted_connect_is_finished(services, fake_target):
    vol = services.volume_service.create(1)
    att, info = services.attachment_service.create(vol.id, instance(), connector())
    fake_target.unexport(vol.id)               # crashed before the kernel was touched
    services.reconciler.run()
    assert fake_target.inspect(vol.id).acls[A].chap.password == info["auth_password"]
    _, again = services.attachment_service.update(att.id, connector())   # the client's retry
    assert again == info


def test_interrupted_volume_operations_resolved(services):
    made = services.volume_service.create(1)                  # storage exists: finished
    services.store.cas_volume(made.id, None, status="creating")
    never = services.volume_service.create(1)                 # storage never came: forgotten
    services.volume_backend.delete(never.id, never.location)
    services.store.cas_volume(never.id, None, status="creating")
    deleting = services.volume_service.create(1)
    services.store.cas_volume(deleting.id, None, status="deleting")
    extending = services.volume_service.create(1)
    services.store.cas_volume(extending.id, None, status="extending")
    report = services.reconciler.run()
    assert report.interrupted_resolved == 4
    assert [v.id for v in services.volume_service.list_volumes()] == [made.id, extending.id]
    assert services.store.volume(made.id).status == "available"
    assert services.store.volume(extending.id).status == "available"
    assert not __import__("os").path.exists(deleting.location)


def test_a_volume_being_created_is_not_touched_by_the_reconciler(services, monkeypatch):
    import threading
    real = services.volume_backend.create
    started, release = threading.Event(), threading.Event()

    def slow_create(vid, size, source=None, others=None):
        started.set()
        release.wait(10)
        return real(vid, size, source, others)
    monkeypatch.setattr(services.volume_backend, "create", slow_create)
    result = {}
    creator = threading.Thread(
        target=lambda: result.setdefault("vol", services.volume_service.create(1)))
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


# -- a restore: LIO holds nothing of ours (after a reboot) ----------------------
def _reboot(fake_target):
    fake_target.targets.clear()
    fake_target.storage_objects.clear()
    fake_target.calls.clear()


def _statements(store) -> list[str]:
    """Every SQL statement the store runs from now on (connection setup aside)."""
    seen: list[str] = []
    store.close()
    real_connect = store._connect

    def connect():
        conn = real_connect()
        conn.set_trace_callback(
            lambda sql: None if sql.startswith("PRAGMA") else seen.append(sql))
        return conn
    store._connect = connect
    return seen


def test_a_restore_builds_each_export_without_reading_lio(services, fake_target, monkeypatch):
    vols = [_two_attached(services)[0] for _ in range(3)]
    before = {v.id: fake_target.inspect(v.id) for v in vols}
    _reboot(fake_target)
    inspected = []
    real_inspect = fake_target.inspect
    monkeypatch.setattr(fake_target, "inspect", lambda vid: inspected.append(vid) or
                        real_inspect(vid))
    report = services.reconciler.run(exclusive=True)
    assert fake_target.calls == ["restore_export"] * 3 and inspected == []
    assert {v.id: real_inspect(v.id) for v in vols} == before
    assert (report.volumes_repaired, report.drift_found, report.statuses_fixed) == (3, 3, 0)
    assert services.reconciler.run().changed == 0        # the next pass finds no drift


@pytest.mark.parametrize("exclusive,per_volume", [(True, 0), (False, 2)])
def test_a_restore_reads_the_store_once_when_exclusive(services, fake_target, exclusive,
                                                      per_volume):
    counts = []
    for n in (2, 5):
        while len(services.store.volumes()) < n:
            _two_attached(services)
        _reboot(fake_target)
        seen = _statements(services.store)
        services.reconciler.run(exclusive=exclusive)
        counts.append(len(seen))
        assert not [s for s in seen if not s.lstrip().upper().startswith("SELECT")], \
            "a restore with nothing to fix wrote to the store"
        seen.clear()
    assert counts[1] - counts[0] == per_volume * 3


def test_a_restore_fixes_a_wrong_status(services, fake_target):
    vol, _ = _two_attached(services)
    services.store.cas_volume(vol.id, None, status="available")     # wrong: in use
    _reboot(fake_target)
    report = services.reconciler.run(exclusive=True)
    assert report.statuses_fixed == 1 and services.store.volume(vol.id).status == "in-use"


def test_a_restore_converges_what_appeared_meanwhile(services, fake_target, monkeypatch):
    """LIO held nothing of ours when the pass began, but by the volume's turn
    a drifted export of it is there: it is converged, not built over."""
    vol, infos = _two_attached(services)
    tgt = fake_target.targets[fake_target.target_iqn(vol.id)]
    tgt.tpg_attributes["authentication"] = "0"
    tgt.acls.pop(B)
    real_list, listed = fake_target.list_exports, []
    # The pass's first listing saw nothing of ours; the orphan check sees all.
    monkeypatch.setattr(fake_target, "list_exports",
                        lambda **kw: real_list(**kw) if listed.append(1) or len(listed) > 1
                        else [])
    fake_target.calls.clear()
    services.reconciler.run()
    assert fake_target.calls[0] == "export" and "restore_export" not in fake_target.calls
    assert services.converger.drift(services.store.volume(vol.id)) == []
    assert fake_target.inspect(vol.id).acls[B].chap.password == infos[1]["auth_password"]


def test_a_restore_reads_each_volume_under_its_lock(services, fake_target, monkeypatch):
    """Not exclusive (the API may be serving): a host detached just before the
    reconciler got the volume's lock does not get its ACL back."""
    vol, _ = _two_attached(services)
    _reboot(fake_target)
    gone = next(a for a in services.store.attachments(vol.id) if a.initiator == B)
    real_lock = services.locks.lock

    @contextlib.contextmanager
    def lock(volume_id):
        with real_lock(volume_id):
            # The API's delete, which held the lock first.
            services.store.cas_attachment(gone.id, ["attached"], status="detached")
            yield
    monkeypatch.setattr(services.locks, "lock", lock)
    services.reconciler.run()
    assert set(fake_target.inspect(vol.id).acls) == {A}


def _record_restores(services, fake_target, monkeypatch, hook=None):
    """Wraps restore_export(): who restored what, and whether the volume's lock was held."""
    held, seen = set(), []
    real_lock, real_restore = services.locks.lock, fake_target.restore_export

    @contextlib.contextmanager
    def lock(volume_id):
        with real_lock(volume_id):
            held.add(volume_id)
            try:
                yield
            finally:
                held.discard(volume_id)

    def restore_export(spec, grants):
        seen.append((spec.volume_id, threading.current_thread().name, spec.volume_id in held))
        if hook:
            hook(spec.volume_id)
        return real_restore(spec, grants)
    monkeypatch.setattr(services.locks, "lock", lock)
    monkeypatch.setattr(fake_target, "restore_export", restore_export)
    return seen


def test_a_first_pass_restores_volumes_side_by_side(services, fake_target, monkeypatch):
    vols = [_two_attached(services)[0] for _ in range(6)]
    before = {v.id: fake_target.inspect(v.id) for v in vols}
    _reboot(fake_target)
    two_at_once = threading.Barrier(2, timeout=10)

    def hook(volume_id):
        if volume_id in (vols[0].id, vols[1].id):
            two_at_once.wait()      # breaks (an error) unless both restore at once
        if volume_id == vols[2].id:
            raise TargetError("the kernel said no")
    seen = _record_restores(services, fake_target, monkeypatch, hook)
    report = services.reconciler.run(exclusive=True)
    assert [e.split(":")[0] for e in report.errors] == [f"volume {vols[2].id}"]
    assert (report.volumes_checked, report.volumes_repaired) == (6, 5)
    assert sorted(vid for vid, _, _ in seen) == sorted(v.id for v in vols)
    assert all(locked for _, _, locked in seen), "a restore ran without its volume's lock"
    assert len({thread for _, thread, _ in seen}) > 1
    assert all(thread.startswith("restore") for _, thread, _ in seen)
    assert {v.id: fake_target.inspect(v.id) for v in vols if v != vols[2]} == \
        {vid: state for vid, state in before.items() if vid != vols[2].id}
    assert fake_target.inspect(vols[2].id) is None
    assert services.reconciler.run().volumes_repaired == 1     # the next pass builds it


@pytest.mark.parametrize("workers,exclusive", [(1, True), (4, False)])
def test_a_restore_runs_in_this_thread_unless_exclusive_with_workers(
        tmp_path, fake_target, monkeypatch, workers, exclusive):
    services = wire_services(str(tmp_path / "state"), fake_target,
                             FileBackend(str(tmp_path / "state" / "volumes")),
                             (Portal("127.0.0.1"),), max_size_gib=100, restore_workers=workers)
    for _ in range(3):
        _two_attached(services)
    _reboot(fake_target)
    seen = _record_restores(services, fake_target, monkeypatch)
    assert services.reconciler.run(exclusive=exclusive).volumes_repaired == 3
    assert {thread for _, thread, _ in seen} == {threading.current_thread().name}


# -- the steady pass: one store snapshot, a lock only where something looks wrong --
def _count_locks(services, monkeypatch) -> list[str]:
    taken: list[str] = []
    real = services.reconciler.locks.lock

    def counting(volume_id):
        taken.append(volume_id)
        return real(volume_id)
    monkeypatch.setattr(services.reconciler.locks, "lock", counting)
    return taken


def test_a_quiet_pass_takes_no_volume_lock(services, monkeypatch):
    vols = [_two_attached(services)[0] for _ in range(3)]
    taken = _count_locks(services, monkeypatch)
    report = services.reconciler.run()
    assert report.volumes_checked == len(vols) and report.changed == 0
    assert taken == []


def test_a_quiet_pass_peeks_at_lio_without_its_lock(services, fake_target, monkeypatch):
    """The target backend's lock is skipped too (peek, not inspect): a
    difference seen is looked at again under both locks."""
    vols = [_two_attached(services)[0] for _ in range(2)]
    calls: list[str] = []
    real = fake_target.inspect
    for name in ("peek", "inspect"):
        monkeypatch.setattr(fake_target, name,
                            lambda vid, _n=name: calls.append(_n) or real(vid))
    services.reconciler.run()
    assert calls == ["peek"] * len(vols)
    fake_target.targets[fake_target.target_iqn(vols[0].id)].acls.pop(A)
    calls.clear()
    report = services.reconciler.run()
    assert report.volumes_repaired == 1
    assert calls[:2] == ["peek", "inspect"]     # seen, then confirmed under the lock


def test_only_the_volume_that_looks_wrong_is_locked_and_repaired(services, fake_target,
                                                                 monkeypatch):
    vols = [_two_attached(services)[0] for _ in range(3)]
    fake_target.targets[fake_target.target_iqn(vols[1].id)].acls.pop(A)
    taken = _count_locks(services, monkeypatch)
    report = services.reconciler.run()
    assert taken == [vols[1].id]
    assert report.drift_found == 1 and report.volumes_repaired == 1
    assert A in fake_target.inspect(vols[1].id).acls


def test_a_wrong_status_alone_is_fixed(services):
    vol, _ = _two_attached(services)
    services.store.cas_volume(vol.id, None, status="available")
    report = services.reconciler.run()
    assert report.statuses_fixed == 1 and services.store.volume(vol.id).status == "in-use"


def test_a_stale_snapshot_leads_to_a_second_look_not_a_repair(services, fake_target,
                                                              monkeypatch):
    """A request that lands between the pass's snapshot and its look at the
    volume (here: a detach) makes LIO differ from the snapshot; the locked
    second look reads the store again and finds nothing to repair."""
    vol, _ = _two_attached(services)
    att_b = next(a for a in services.store.attachments(vol.id) if a.initiator == B)
    real = services.store.attachments

    def snapshot_then_detach(*args, **kwargs):
        rows = real(*args, **kwargs)
        if not args and kwargs.get("include_detached"):     # the pass's snapshot
            monkeypatch.setattr(services.store, "attachments", real)
            services.attachment_service.delete(att_b.id)
        return rows
    monkeypatch.setattr(services.store, "attachments", snapshot_then_detach)
    taken = _count_locks(services, monkeypatch)
    report = services.reconciler.run()
    assert taken == [vol.id, vol.id]    # the detach's own lock, then the second look
    assert report.drift_found == 0 and report.volumes_repaired == 0
    assert set(fake_target.inspect(vol.id).acls) == {A}


# -- full comparisons in turns, the outline on every run -----------------------
def _in_turns(services, n: int, every: int):
    vols = [_two_attached(services)[0] for _ in range(n)]
    services.reconciler.full_every = every
    first = services.reconciler.run()
    assert first.fully_compared == n        # a process's first run compares all
    return vols


def test_each_volume_is_compared_in_full_once_per_round_of_runs(services, monkeypatch):
    vols = _in_turns(services, 6, 3)
    full: list[str] = []
    real = services.converger.drift

    def recording(vol, atts=None, *, peek=False, outline=False):
        if not outline:
            full.append(vol.id)
        return real(vol, atts, peek=peek, outline=outline)
    monkeypatch.setattr(services.converger, "drift", recording)
    reports = [services.reconciler.run() for _ in range(3)]
    assert sorted(full) == sorted(v.id for v in vols)       # each once in three runs
    assert sum(r.fully_compared for r in reports) == len(vols)
    assert all(r.volumes_checked == len(vols) for r in reports)


def test_what_opens_or_closes_access_is_found_on_every_run(services, fake_target):
    vols = _in_turns(services, 4, 10**9)    # no volume's full turn comes up
    assert services.reconciler.run().fully_compared == 0
    tgts = [fake_target.targets[fake_target.target_iqn(v.id)] for v in vols]
    tgts[0].acls.pop(A)
    tgts[1].tpg_attributes["authentication"] = "0"
    tgts[2].tpg_enabled = False
    tgts[3].acls["iqn.2004-01.org.example:intruder"] = tgts[3].acls[A]
    report = services.reconciler.run()
    # Each seen in its outline, then compared in full under its lock.
    assert report.volumes_repaired == 4 and report.fully_compared == 4
    assert services.reconciler.run().drift_found == 0
    for tgt in tgts:
        assert set(tgt.acls) == {A, B} and tgt.tpg_enabled
        assert tgt.tpg_attributes["authentication"] == "1"


def test_a_changed_secret_waits_for_the_volumes_full_turn(services, fake_target):
    vols = _in_turns(services, 1, 2)
    vol = vols[0]
    acl = fake_target.targets[fake_target.target_iqn(vol.id)].acls[A]
    want = acl.chap
    acl.chap = None                          # someone cleared its CHAP
    reports = [services.reconciler.run() for _ in range(2)]
    # Not an outline matter: found on exactly one of the two runs (its turn).
    assert [r.volumes_repaired for r in reports] in ([1, 0], [0, 1])
    assert fake_target.targets[fake_target.target_iqn(vol.id)].acls[A].chap == want


def test_runs_per_full_comparison_from_the_options():
    from iscsiattach.attachments.reconciler import full_check_share
    assert full_check_share(60, 600) == 10
    assert full_check_share(60, 0) == 1 and full_check_share(60, 30) == 1
    assert full_check_share(2, 5) == 2


def test_storage_left_without_a_target_is_removed_once_a_round(services, fake_target,
                                                                tmp_path):
    """The backstores' walk (every storage object's folder on the node) is
    made on a round's first run only; the outline runs list targets."""
    _in_turns(services, 1, 3)
    path = tmp_path / "orphan.img"
    path.write_bytes(b"\0" * 4096)
    orphan = str(uuid.uuid4())
    fake_target.export(ExportSpec(orphan, Backing(BackingKind.FILE, str(path), 4096),
                                  (Portal("127.0.0.1"),)))
    fake_target.targets.pop(fake_target.target_iqn(orphan))     # storage object only
    removed = [services.reconciler.run().orphans_removed for _ in range(3)]
    assert removed == [0, 0, 1]         # runs 2 and 3 of the round, then its first
    assert not fake_target.exists(orphan)


# -- the store read once while nothing is committed ---------------------------
def _count_store_reads(services, monkeypatch) -> list[str]:
    reads: list[str] = []
    for name in ("volumes", "attachments"):
        real = getattr(services.store, name)
        monkeypatch.setattr(services.store, name,
                            lambda *a, _n=name, _r=real, **k: reads.append(_n) or _r(*a, **k))
    return reads


def test_a_quiet_run_reuses_the_last_snapshot_of_the_store(services, fake_target, monkeypatch):
    vol, _ = _two_attached(services)
    services.reconciler.run()
    reads = _count_store_reads(services, monkeypatch)
    assert services.reconciler.run().changed == 0
    assert reads == []                          # nothing committed since: no store read
    # Drift in LIO alone (the store unchanged) is still found on the old snapshot.
    fake_target.targets[fake_target.target_iqn(vol.id)].acls.pop(A)
    report = services.reconciler.run()
    assert report.volumes_repaired == 1 and A in fake_target.inspect(vol.id).acls
    assert "volumes" not in reads               # the locked look read only this volume's rows


def test_a_commit_makes_the_next_run_read_the_store_again(services, fake_target, monkeypatch):
    vol, _ = _two_attached(services)
    services.reconciler.run()
    before = services.store.generation()
    assert services.store.generation() == before            # asking changes nothing
    other, _ = _two_attached(services)                      # commits
    assert services.store.generation() != before
    reads = _count_store_reads(services, monkeypatch)
    report = services.reconciler.run()
    assert {"volumes", "attachments"} <= set(reads)
    assert report.volumes_checked == 2 and report.changed == 0
