"""The attach/detach v2 workflow against the fake target."""
from __future__ import annotations

import threading
import uuid

import pytest

from iscsiattach.exception import Conflict, InvalidInput, NotFound, TargetError
from iscsiattach.secret import Secret

A = "iqn.2004-10.com.example:host-a"
B = "iqn.2004-10.com.example:host-b"


def connector(initiator=A, **extra):
    return {"initiator": initiator, "ip": "192.0.2.10", "host": "host-a",
            "platform": "x86_64", "os_type": "linux", "multipath": False, **extra}


def instance():
    return str(uuid.uuid4())


@pytest.fixture
def vol(services):
    return services.volume_service.create(1, name="data")


@pytest.fixture
def multi(services):
    return services.volume_service.create(1, name="shared", multiattach=True)


def status(services, volume):
    return services.store.volume(volume.id).status


def test_reserve_then_update_then_complete_then_delete(services, vol, fake_target):
    svc = services.attachment_service
    att, info = svc.create(vol.id, instance())
    assert info is None and att.status == "reserved" and status(services, vol) == "reserved"
    assert fake_target.list_exports() == []          # a reservation touches no kernel

    att, info = svc.update(att.id, connector())
    assert att.status == "attaching" and status(services, vol) == "attaching"
    assert info["driver_volume_type"] == "iscsi"
    assert info["target_iqn"] == fake_target.prefix + "volume-" + vol.id
    assert info["target_portal"] == "127.0.0.1:3260" and info["target_lun"] == 0
    assert info["target_discovered"] is False and info["auth_method"] == "CHAP"
    assert isinstance(info["auth_password"], Secret) and len(info["auth_password"]) >= 24
    assert info["access_mode"] == "rw" and info["encrypted"] is False
    assert info["qos_specs"] is None and info["attachment_id"] == att.id
    assert info["volume_id"] == vol.id and "target_portals" not in info
    acl = fake_target.inspect(vol.id).acls[A]
    assert acl.chap.userid == info["auth_username"] and acl.chap.password == info["auth_password"]

    att = svc.complete(att.id)
    assert att.status == "attached" and att.attached_at and status(services, vol) == "in-use"
    assert svc.complete(att.id).status == "attached"            # idempotent

    svc.delete(att.id)
    assert fake_target.inspect(vol.id) is None
    assert status(services, vol) == "available"
    assert services.store.attachment(att.id).status == "detached"
    svc.delete(att.id)                                          # gone: still success
    assert svc.list_attachments(vol.id) == []


def test_create_with_connector_connects_in_one_call(services, vol, fake_target):
    att, info = services.attachment_service.create(vol.id, instance(), connector())
    assert att.status == "attaching" and info["auth_username"] == att.chap_userid
    assert fake_target.drift(services.converger.desired(services.store.volume(vol.id)).spec,
                             services.converger.desired(services.store.volume(vol.id)).grants) == []


def test_same_connect_repeated_returns_same_info_and_changes_nothing(services, vol, fake_target):
    att, first = services.attachment_service.create(vol.id, instance(), connector())
    before_row = services.store.attachment(att.id)
    before_lio = fake_target.inspect(vol.id)
    _, again = services.attachment_service.update(att.id, connector())
    assert again == first
    assert services.store.attachment(att.id) == before_row
    assert fake_target.inspect(vol.id) == before_lio


def test_multipath_connector_gets_list_fields(services, vol):
    _, info = services.attachment_service.create(vol.id, instance(), connector(multipath=True))
    assert info["target_portals"] == ["127.0.0.1:3260"]
    assert info["target_iqns"] == [info["target_iqn"]] and info["target_luns"] == [0]


def test_non_multiattach_refuses_a_second_instance_and_host(services, vol):
    inst = instance()
    att, _ = services.attachment_service.create(vol.id, inst, connector())
    with pytest.raises(Conflict):
        services.attachment_service.create(vol.id, instance())
    # The same instance may reserve again (a retried reservation), but may
    # not connect the volume to a second host.
    again, _ = services.attachment_service.create(vol.id, inst)
    with pytest.raises(Conflict, match="another host"):
        services.attachment_service.update(again.id, connector(B))
    assert services.store.attachment(again.id).status == "reserved"


def test_multiattach_two_hosts_have_own_acls_and_credentials(services, multi, fake_target):
    a, ia = services.attachment_service.create(multi.id, instance(), connector(A))
    b, ib = services.attachment_service.create(multi.id, instance(), connector(B))
    acls = fake_target.inspect(multi.id).acls
    assert set(acls) == {A, B} and ia["auth_password"] != ib["auth_password"]
    services.attachment_service.delete(a.id)
    assert set(fake_target.inspect(multi.id).acls) == {B}
    services.attachment_service.delete(b.id)
    assert fake_target.inspect(multi.id) is None


def test_one_initiator_two_attachments_share_the_acl_until_the_last(services, multi, fake_target):
    a, ia = services.attachment_service.create(multi.id, instance(), connector(A))
    b, ib = services.attachment_service.create(multi.id, instance(), connector(A))
    assert (ia["auth_username"], ia["auth_password"]) == (ib["auth_username"], ib["auth_password"])
    services.attachment_service.delete(a.id)
    assert set(fake_target.inspect(multi.id).acls) == {A}
    services.attachment_service.delete(b.id)
    assert fake_target.inspect(multi.id) is None


def test_read_only_mode_write_protects_and_cannot_mix_on_one_initiator(services, multi,
                                                                     fake_target):
    ro, info = services.attachment_service.create(multi.id, instance(), connector(A), mode="ro")
    assert info["access_mode"] == "ro"
    assert fake_target.inspect(multi.id).acls[A].mapped_luns == {0: True}
    # One initiator has one mapping: a rw attachment beside a ro one would
    # make the ro one writable, so it is refused, and leaves nothing behind.
    with pytest.raises(Conflict, match="cannot also attach it rw"):
        services.attachment_service.create(multi.id, instance(), connector(A), mode="rw")
    assert [a.id for a in services.attachment_service.list_attachments(multi.id)] == [ro.id]
    assert fake_target.inspect(multi.id).acls[A].mapped_luns == {0: True}


def test_connector_mode_applies_when_none_was_given(services, vol, fake_target):
    att, info = services.attachment_service.create(vol.id, instance(), connector(mode="ro"))
    assert info["access_mode"] == "ro" and att.attach_mode == "ro"
    assert fake_target.inspect(vol.id).acls[A].mapped_luns == {0: True}


def test_failed_connect_leaves_error_attaching_and_nothing_in_lio(services, vol, fake_target,
                                                                monkeypatch):
    att, _ = services.attachment_service.create(vol.id, instance())

    def broken(*args, **kwargs):
        raise TargetError("authorizing: kernel said no")
    monkeypatch.setattr(fake_target, "authorize", broken)
    with pytest.raises(TargetError):
        services.attachment_service.update(att.id, connector())
    assert services.store.attachment(att.id).status == "error_attaching"
    assert fake_target.inspect(vol.id) is None and status(services, vol) == "reserved"
    monkeypatch.undo()
    att, info = services.attachment_service.update(att.id, connector())     # a retry works
    assert att.status == "attaching" and fake_target.inspect(vol.id).acls


@pytest.mark.parametrize("bad", [{}, {"initiator": "not-an-iqn"}, "conn",
                                 {"initiator": A, "multipath": "maybe"}])
def test_bad_connector_refused_and_nothing_changed(services, vol, fake_target, bad):
    att, _ = services.attachment_service.create(vol.id, instance())
    with pytest.raises(InvalidInput):
        services.attachment_service.update(att.id, bad)
    assert services.store.attachment(att.id) == att and fake_target.list_exports() == []
    with pytest.raises(InvalidInput):
        services.attachment_service.create(vol.id, instance(), bad)
    assert len(services.attachment_service.list_attachments(vol.id)) == 1


def test_refused_transitions(services, vol):
    svc = services.attachment_service
    with pytest.raises(InvalidInput):
        svc.create("not-a-uuid", instance())
    with pytest.raises(InvalidInput):
        svc.create(vol.id, "nope")
    with pytest.raises(InvalidInput):
        svc.create(vol.id, instance(), mode="rx")
    with pytest.raises(NotFound):
        svc.create(str(uuid.uuid4()), instance())
    with pytest.raises(NotFound):
        svc.update(str(uuid.uuid4()), connector())
    att, _ = svc.create(vol.id, instance())
    with pytest.raises(Conflict):
        svc.complete(att.id)                       # never connected
    svc.delete(att.id)
    with pytest.raises(Conflict):
        svc.update(att.id, connector())            # deleted
    with pytest.raises(Conflict):
        svc.complete(att.id)
    att, _ = svc.create(vol.id, instance(), connector(A))
    with pytest.raises(Conflict, match="connected to"):
        svc.update(att.id, connector(B))           # moving a connected attachment


def test_volume_in_transition_cannot_be_attached(services, vol):
    services.store.cas_volume(vol.id, None, status="deleting")
    with pytest.raises(Conflict, match="deleting"):
        services.attachment_service.create(vol.id, instance())


def test_concurrent_connects_on_one_volume_exactly_one_wins(services, vol, fake_target):
    results: list[object] = []

    def attempt(i):
        try:
            results.append(services.attachment_service.create(
                vol.id, instance(), connector(f"iqn.2004-10.com.example:h{i}")))
        except Conflict as exc:
            results.append(exc)
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if not isinstance(r, Conflict)]
    assert len(wins) == 1 and len(results) == 8
    assert len(fake_target.inspect(vol.id).acls) == 1
    assert len(services.attachment_service.list_attachments(vol.id)) == 1


def test_failed_detach_leaves_error_detaching_and_a_retry_finishes(services, vol, fake_target,
                                                                  monkeypatch):
    att, _ = services.attachment_service.create(vol.id, instance(), connector())

    def broken(volume_id):
        raise TargetError("removing the export: device busy")
    monkeypatch.setattr(fake_target, "unexport", broken)
    with pytest.raises(TargetError):
        services.attachment_service.delete(att.id)
    assert services.store.attachment(att.id).status == "error_detaching"
    assert status(services, vol) == "reserved"            # still held, not in use
    monkeypatch.undo()
    services.attachment_service.delete(att.id)
    assert services.store.attachment(att.id).status == "detached"
    assert fake_target.inspect(vol.id) is None and status(services, vol) == "available"


def test_error_attaching_cannot_complete_but_can_be_deleted(services, vol, fake_target,
                                                           monkeypatch):
    att, _ = services.attachment_service.create(vol.id, instance())
    monkeypatch.setattr(fake_target, "export", lambda spec: (_ for _ in ()).throw(
        TargetError("exporting: no")))
    with pytest.raises(TargetError):
        services.attachment_service.update(att.id, connector())
    monkeypatch.undo()
    with pytest.raises(Conflict):
        services.attachment_service.complete(att.id)
    services.attachment_service.delete(att.id)
    assert status(services, vol) == "available"


def test_multiattach_reserve_while_in_use(services, multi):
    first, _ = services.attachment_service.create(multi.id, instance(), connector(A))
    services.attachment_service.complete(first.id)
    second, info = services.attachment_service.create(multi.id, instance())
    assert info is None and second.status == "reserved"
    assert status(services, multi) == "in-use"
    services.attachment_service.delete(first.id)
    assert status(services, multi) == "reserved"
    services.attachment_service.delete(second.id)
    assert status(services, multi) == "available"


def test_attachments_listed_and_shown(services, vol, multi):
    a, _ = services.attachment_service.create(vol.id, instance())
    b, _ = services.attachment_service.create(multi.id, instance())
    assert {x.id for x in services.attachment_service.list_attachments()} == {a.id, b.id}
    assert [x.id for x in services.attachment_service.list_attachments(vol.id)] == [a.id]
    assert services.attachment_service.show(b.id).volume_id == multi.id
    with pytest.raises(InvalidInput):
        services.attachment_service.show("nope")


def test_failed_retry_of_a_connected_attachment_does_not_cut_the_host_off(
        services, vol, fake_target, monkeypatch):
    att, info = services.attachment_service.create(vol.id, instance(), connector())
    services.attachment_service.complete(att.id)
    monkeypatch.setattr(fake_target, "authorize", lambda *a: (_ for _ in ()).throw(
        TargetError("authorizing: transient")))
    with pytest.raises(TargetError):
        services.attachment_service.update(att.id, connector())
    monkeypatch.undo()
    assert services.store.attachment(att.id).status == "attached"
    assert A in fake_target.inspect(vol.id).acls and status(services, vol) == "in-use"


def test_failed_create_with_connector_leaves_no_reservation(services, vol, fake_target,
                                                            monkeypatch):
    monkeypatch.setattr(fake_target, "export", lambda spec: (_ for _ in ()).throw(
        TargetError("exporting: no")))
    with pytest.raises(TargetError):
        services.attachment_service.create(vol.id, instance(), connector())
    monkeypatch.undo()
    assert services.attachment_service.list_attachments(vol.id) == []
    assert status(services, vol) == "available"
    services.attachment_service.create(vol.id, instance(), connector())     # the volume is free


def test_detached_host_loses_its_acl_even_when_export_repair_fails(services, multi,
                                                                   fake_target, monkeypatch):
    a, _ = services.attachment_service.create(multi.id, instance(), connector(A))
    b, _ = services.attachment_service.create(multi.id, instance(), connector(B))
    monkeypatch.setattr(fake_target, "export", lambda spec: (_ for _ in ()).throw(
        TargetError("exporting: portal address gone")))
    with pytest.raises(TargetError):
        services.attachment_service.delete(b.id)
    assert set(fake_target.inspect(multi.id).acls) == {A}, "a detached host kept access"


def test_complete_retry_after_a_crash_fixes_the_volume_status(services, vol):
    att, _ = services.attachment_service.create(vol.id, instance(), connector())
    services.store.cas_attachment(att.id, ["attaching"], status="attached")   # crash here
    assert status(services, vol) == "attaching"
    services.attachment_service.complete(att.id)
    assert status(services, vol) == "in-use"


def test_delete_of_an_attachment_that_is_gone_succeeds(services, vol):
    att, _ = services.attachment_service.create(vol.id, instance())
    services.attachment_service.delete(att.id)
    services.volume_service.delete(vol.id)             # its rows go with it
    services.attachment_service.delete(att.id)
    services.attachment_service.delete(str(uuid.uuid4()))


def test_non_multiattach_without_instance_reserves_once(services, vol):
    services.attachment_service.create(vol.id, None)
    with pytest.raises(Conflict):
        services.attachment_service.create(vol.id, None)
