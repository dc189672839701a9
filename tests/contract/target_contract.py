"""The target-backend contract: one suite, run on the fake and on real LIO.

A subclass provides three fixtures:
  backend       a TargetBackend whose prefix is private to the test run
  make_backing  make_backing(size=...) -> Backing of a fresh file
  tamper        a Tamper: changes the backend's state behind its back
"""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from iscsiattach.exception import InvalidInput, NotFound
from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES,
    Backing,
    BackingKind,
    ChapCredentials,
    ExportOutline,
    ExportSpec,
    Grant,
    Portal,
)
from iscsiattach.secret import Secret

INITIATOR = "iqn.2004-10.com.example:host-a"
OTHER = "iqn.2004-10.com.example:host-b"
PORTAL = Portal("127.0.0.1", 3260)


def chap(user="user-a", secret="secret-a-0123456789", **mutual) -> ChapCredentials:
    return ChapCredentials(user, Secret(secret), **mutual)


class Tamper:
    """What a test can do behind the backend's back (implemented per backend)."""

    def set_tpg_attribute(self, volume_id, name, value): raise NotImplementedError
    def set_auth_method(self, volume_id, value): raise NotImplementedError
    def disable_tpg(self, volume_id): raise NotImplementedError
    def set_chap_password(self, volume_id, initiator, value): raise NotImplementedError
    def remove_portal(self, volume_id, portal): raise NotImplementedError
    def remove_lun0(self, volume_id): raise NotImplementedError
    def create_foreign_target(self, iqn): raise NotImplementedError
    def foreign_target_exists(self, iqn): raise NotImplementedError
    def remove_foreign_target(self, iqn): raise NotImplementedError
    def remove_target_only(self, volume_id): raise NotImplementedError
    def leftovers(self, volume_id): raise NotImplementedError


class TargetContract:
    @pytest.fixture
    def spec(self, make_backing):
        return ExportSpec(str(uuid.uuid4()), make_backing(), (PORTAL,))

    @pytest.fixture
    def exported(self, backend, spec):
        backend.export(spec)
        return spec

    # -- export ---------------------------------------------------------------
    def test_export_creates_a_closed_target(self, backend, spec):
        info = backend.export(spec)
        assert info.target_iqn == backend.prefix + "volume-" + spec.volume_id
        assert info.lun == 0 and info.portals == (PORTAL,)
        assert info.unit_serial == spec.volume_id
        assert info.naa_wwn == "naa.6001405" + spec.volume_id.replace("-", "")[:25]
        state = backend.inspect(spec.volume_id)
        assert state.tpg_enabled
        assert state.tpg_attributes == SECURE_TPG_ATTRIBUTES
        assert state.auth_method == "CHAP"
        assert state.portals == {PORTAL}
        assert (state.lun0_backing.kind, state.lun0_backing.path) == \
            (spec.backing.kind, spec.backing.path)
        assert state.unit_serial == spec.volume_id
        assert state.acls == {}
        assert backend.drift(spec, []) == []

    def test_export_repeated_is_a_noop(self, backend, spec):
        first = backend.export(spec)
        before = backend.inspect(spec.volume_id)
        assert backend.export(spec) == first
        assert backend.inspect(spec.volume_id) == before

    def test_export_lists_only_our_volumes(self, backend, spec, make_backing):
        other = ExportSpec(str(uuid.uuid4()), make_backing(), (PORTAL,))
        backend.export(spec)
        backend.export(other)
        listed = backend.list_exports()
        assert spec.volume_id in listed and other.volume_id in listed
        assert listed == sorted(listed)

    def test_storage_without_target_is_listed_and_removed(self, backend, tamper, exported):
        tamper.remove_target_only(exported.volume_id)
        assert backend.inspect(exported.volume_id) is None
        assert exported.volume_id in backend.list_exports()     # an orphan of ours
        assert exported.volume_id not in backend.list_exports(backstores=False)
        assert backend.peek_exists(exported.volume_id)
        assert backend.exists(exported.volume_id)
        assert backend.unexport(exported.volume_id) is True
        assert not backend.exists(exported.volume_id)
        assert tamper.leftovers(exported.volume_id) == []

    def test_export_converges_portals(self, backend, exported):
        v6 = Portal("::1", 3260)
        moved = ExportSpec(exported.volume_id, exported.backing, (v6,))
        info = backend.export(moved)
        assert info.portals == (v6,) and str(v6) == "[::1]:3260"
        assert backend.inspect(exported.volume_id).portals == {v6}

    def test_export_missing_backing_refused_and_nothing_made(self, backend):
        vid = str(uuid.uuid4())
        spec = ExportSpec(vid, Backing(BackingKind.FILE, f"/nonexistent/{vid}", 1 << 20),
                          (PORTAL,))
        with pytest.raises(InvalidInput, match="does not exist"):
            backend.export(spec)
        assert vid not in backend.list_exports()

    def test_export_of_a_regular_file_as_block_refused(self, backend, make_backing):
        path = make_backing().path
        spec = ExportSpec(str(uuid.uuid4()), Backing(BackingKind.BLOCK, path), (PORTAL,))
        with pytest.raises(InvalidInput, match="not a block device"):
            backend.export(spec)
        assert spec.volume_id not in backend.list_exports()

    # -- drift ----------------------------------------------------------------
    @pytest.mark.parametrize("name,bad", [("authentication", "0"),
                                          ("generate_node_acls", "1"),
                                          ("demo_mode_write_protect", "0"),
                                          ("cache_dynamic_acls", "1")])
    def test_tpg_attribute_drift_found_and_fixed(self, backend, tamper, exported, name, bad):
        tamper.set_tpg_attribute(exported.volume_id, name, bad)
        drift = backend.drift(exported, [])
        assert f"{name} is {bad}" in " ".join(d.detail for d in drift), drift
        # LIO couples some settings (authentication=0 adds None to AuthMethod).
        assert {d.kind for d in drift} <= {"tpg-attribute", "tpg-auth-method"}, drift
        backend.export(exported)
        assert backend.drift(exported, []) == []
        assert backend.inspect(exported.volume_id).tpg_attributes[name] == \
            SECURE_TPG_ATTRIBUTES[name]

    def test_auth_method_and_disabled_tpg_fixed(self, backend, tamper, exported):
        tamper.set_auth_method(exported.volume_id, "CHAP,None")
        tamper.disable_tpg(exported.volume_id)
        kinds = sorted(d.kind for d in backend.drift(exported, []))
        assert kinds == ["tpg-auth-method", "tpg-disabled"]
        backend.export(exported)
        assert backend.drift(exported, []) == []

    def test_missing_portal_and_lun_repaired(self, backend, tamper, exported):
        tamper.remove_portal(exported.volume_id, PORTAL)
        tamper.remove_lun0(exported.volume_id)
        kinds = sorted(d.kind for d in backend.drift(exported, []))
        assert kinds == ["lun-missing", "portal-missing"]
        backend.export(exported)
        assert backend.drift(exported, []) == []

    def test_a_changed_io_mode_is_drift_and_converges(self, backend, exported):
        """A file exported with direct I/O, wanted through the page cache
        (and back): the storage object is made again the other way."""
        cached = dataclasses.replace(
            exported, backing=dataclasses.replace(exported.backing, direct_io=False))
        assert [d.kind for d in backend.drift(cached, [])] == ["lun-io"]
        backend.export(cached)
        assert backend.drift(cached, []) == []
        assert backend.inspect(cached.volume_id).lun0_backing.direct_io is False
        backend.export(exported)
        assert backend.inspect(exported.volume_id).lun0_backing.direct_io is True

    def test_drift_of_missing_target(self, backend, spec):
        assert [d.kind for d in backend.drift(spec, [])] == ["target-missing"]

    # -- the outline (what the steady reconcile pass reads of every export) ---
    def test_an_outline_agrees_with_the_full_read(self, backend, exported):
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap()))
        outline = backend.outline(exported.volume_id)
        assert outline == ExportOutline.of(backend.inspect(exported.volume_id))
        assert outline.acls == {INITIATOR} and outline.lun0 and outline.tpg_enabled
        assert backend.outline_drift(exported.volume_id, {INITIATOR}) == []
        assert [(d.kind, d.initiator) for d in backend.outline_drift(
            exported.volume_id, {INITIATOR, OTHER})] == [("acl-missing", OTHER)]
        assert [(d.kind, d.initiator) for d in backend.outline_drift(
            exported.volume_id, set())] == [("acl-extra", INITIATOR)]

    def test_an_outline_sees_access_opened_or_closed(self, backend, tamper, exported):
        tamper.set_tpg_attribute(exported.volume_id, "generate_node_acls", "1")
        tamper.disable_tpg(exported.volume_id)
        tamper.remove_lun0(exported.volume_id)
        kinds = sorted(d.kind for d in backend.outline_drift(exported.volume_id, set()))
        assert kinds == ["lun-missing", "tpg-attribute", "tpg-disabled"]
        backend.export(exported)
        assert backend.outline_drift(exported.volume_id, set()) == []

    def test_an_outline_of_a_missing_target(self, backend, spec):
        assert backend.outline(spec.volume_id) is None
        assert [d.kind for d in backend.outline_drift(spec.volume_id, set())] == \
            ["target-missing"]

    # -- authorize ------------------------------------------------------------
    def test_authorize_creates_acl_with_chap(self, backend, exported):
        grant = Grant(INITIATOR, chap())
        backend.authorize(exported.volume_id, grant)
        acl = backend.inspect(exported.volume_id).acls[INITIATOR]
        assert acl.chap == grant.chap
        assert acl.mapped_luns == {0: False}
        assert backend.drift(exported, [grant]) == []

    def test_authorize_repeated_is_a_noop(self, backend, exported):
        grant = Grant(INITIATOR, chap())
        backend.authorize(exported.volume_id, grant)
        before = backend.inspect(exported.volume_id)
        backend.authorize(exported.volume_id, grant)
        assert backend.inspect(exported.volume_id) == before

    def test_read_only_grant_write_protects_and_converges(self, backend, exported):
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap(), read_only=True))
        assert backend.inspect(exported.volume_id).acls[INITIATOR].mapped_luns == {0: True}
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap(), read_only=False))
        assert backend.inspect(exported.volume_id).acls[INITIATOR].mapped_luns == {0: False}

    def test_each_initiator_has_its_own_credentials(self, backend, exported):
        a, b = Grant(INITIATOR, chap("user-a")), Grant(OTHER, chap("user-b", "secret-b-0123456789"))
        backend.authorize(exported.volume_id, a)
        backend.authorize(exported.volume_id, b)
        acls = backend.inspect(exported.volume_id).acls
        assert acls[INITIATOR].chap == a.chap and acls[OTHER].chap == b.chap
        assert backend.drift(exported, [a, b]) == []
        assert [(d.kind, d.initiator) for d in backend.drift(exported, [a])] == \
            [("acl-extra", OTHER)]

    def test_changed_credentials_rewritten(self, backend, exported):
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap()))
        new = Grant(INITIATOR, chap("user-new", "secret-new-0123456789"))
        backend.authorize(exported.volume_id, new)
        assert backend.inspect(exported.volume_id).acls[INITIATOR].chap == new.chap

    def test_chap_drift_found_without_revealing_and_fixed(self, backend, tamper, exported):
        grant = Grant(INITIATOR, chap())
        backend.authorize(exported.volume_id, grant)
        tamper.set_chap_password(exported.volume_id, INITIATOR, "tampered-0123456789")
        drift = backend.drift(exported, [grant])
        assert [d.kind for d in drift] == ["acl-chap"]
        assert "tampered" not in str(drift) and "secret-a" not in str(drift)
        assert "tampered" not in repr(backend.inspect(exported.volume_id))
        backend.authorize(exported.volume_id, grant)
        assert backend.drift(exported, [grant]) == []

    def test_mutual_chap_set_and_cleared(self, backend, exported):
        mutual = chap(mutual_userid="target-a", mutual_password=Secret("mutual-a-0123456789"))
        backend.authorize(exported.volume_id, Grant(INITIATOR, mutual))
        assert backend.inspect(exported.volume_id).acls[INITIATOR].chap == mutual
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap()))
        found = backend.inspect(exported.volume_id).acls[INITIATOR].chap
        assert found == chap() and not found.mutual

    def test_authorize_without_export_is_not_found(self, backend, spec):
        with pytest.raises(NotFound):
            backend.authorize(spec.volume_id, Grant(INITIATOR, chap()))
        assert backend.inspect(spec.volume_id) is None

    def test_acl_mapping_survives_lun_repair(self, backend, tamper, exported):
        grant = Grant(INITIATOR, chap(), read_only=True)
        backend.authorize(exported.volume_id, grant)
        tamper.remove_lun0(exported.volume_id)
        backend.export(exported)
        backend.authorize(exported.volume_id, grant)
        assert backend.drift(exported, [grant]) == []

    # -- restore_export (where nothing of the volume exists) --------------------
    def test_restore_export_makes_what_export_and_authorize_make(self, backend, spec,
                                                                 make_backing):
        grants = [Grant(INITIATOR, chap()),
                  Grant(OTHER, chap("user-b", "secret-b-0123456789", mutual_userid="tgt-b",
                                    mutual_password=Secret("mutual-b-0123456789")),
                        read_only=True)]
        assert backend.restore_export(spec, grants) is True
        built = backend.inspect(spec.volume_id)
        assert backend.drift(spec, grants) == []
        twin = ExportSpec(str(uuid.uuid4()), make_backing(), spec.portals)
        backend.export(twin)
        for grant in grants:
            backend.authorize(twin.volume_id, grant)
        made = backend.inspect(twin.volume_id)
        same = ("tpg_enabled", "tpg_attributes", "auth_method", "portals", "acls")
        assert {f: getattr(built, f) for f in same} == {f: getattr(made, f) for f in same}
        assert built.acls[OTHER].mapped_luns == {0: True} and built.acls[OTHER].chap.mutual
        assert built.unit_serial == spec.volume_id and built.lun0_backing == spec.backing
        assert spec.volume_id in backend.list_exports()

    def test_restore_export_changes_nothing_where_the_volume_has_anything(
            self, backend, tamper, exported):
        grant = Grant(INITIATOR, chap())
        before = backend.inspect(exported.volume_id)
        assert backend.restore_export(exported, [grant]) is False
        assert backend.inspect(exported.volume_id) == before
        tamper.remove_target_only(exported.volume_id)      # its storage object is left
        assert backend.restore_export(exported, [grant]) is False
        assert backend.inspect(exported.volume_id) is None

    def test_restore_export_with_a_missing_backing_refused_and_nothing_made(self, backend):
        vid = str(uuid.uuid4())
        spec = ExportSpec(vid, Backing(BackingKind.FILE, f"/nonexistent/{vid}", 1 << 20),
                          (PORTAL,))
        with pytest.raises(InvalidInput, match="does not exist"):
            backend.restore_export(spec, [Grant(INITIATOR, chap())])
        assert vid not in backend.list_exports() and not backend.exists(vid)

    # -- deauthorize / unexport ---------------------------------------------------
    def test_deauthorize_removes_only_that_initiator(self, backend, exported):
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap()))
        backend.authorize(exported.volume_id, Grant(OTHER, chap("user-b")))
        assert backend.deauthorize(exported.volume_id, INITIATOR) is True
        assert set(backend.inspect(exported.volume_id).acls) == {OTHER}
        assert backend.deauthorize(exported.volume_id, INITIATOR) is False

    def test_deauthorize_of_missing_volume_succeeds(self, backend, spec):
        assert backend.deauthorize(spec.volume_id, INITIATOR) is False

    def test_unexport_leaves_nothing_and_repeats(self, backend, tamper, exported):
        backend.authorize(exported.volume_id, Grant(INITIATOR, chap()))
        assert backend.unexport(exported.volume_id) is True
        assert backend.inspect(exported.volume_id) is None
        assert exported.volume_id not in backend.list_exports()
        assert tamper.leftovers(exported.volume_id) == []
        assert backend.unexport(exported.volume_id) is False

    def test_foreign_target_untouched(self, backend, tamper, exported):
        foreign = "iqn.2003-01.org.linux-iscsi.elsewhere:volume-" + exported.volume_id
        tamper.create_foreign_target(foreign)
        try:
            assert exported.volume_id in backend.list_exports()
            backend.unexport(exported.volume_id)
            assert tamper.foreign_target_exists(foreign)
            assert backend.list_exports() == [v for v in backend.list_exports()
                                              if v != exported.volume_id]
        finally:
            tamper.remove_foreign_target(foreign)

    # -- bad input ------------------------------------------------------------
    @pytest.mark.parametrize("bad", ["not-a-uuid", "", "../../etc",
                                     "1B4E28BA-2FA1-11D2-883F-0016D3CCA427"])
    def test_bad_volume_id_refused(self, backend, bad):
        with pytest.raises(InvalidInput):
            backend.unexport(bad)
        with pytest.raises(InvalidInput):
            backend.inspect(bad)

    @pytest.mark.parametrize("bad", ["host-a", "iqn.2004-10.com.Example:x", "iqn.04-10.com.x",
                                     "iqn.2004-13.com.x", "eui.123", "iqn.2004-10.com.x:a b"])
    def test_bad_initiator_refused_and_nothing_changed(self, backend, exported, bad):
        with pytest.raises(InvalidInput):
            backend.authorize(exported.volume_id, Grant(bad, chap()))
        with pytest.raises(InvalidInput):
            backend.deauthorize(exported.volume_id, bad)
        assert backend.inspect(exported.volume_id).acls == {}
