"""What a crash or another tool can leave in configfs, and how export recovers."""
from __future__ import annotations

import uuid

from iscsiattach.model import ExportSpec, Grant, Portal, volume_name
from iscsiattach.targets.lio import LioBackend
from iscsiattach.targets.lio.configfs import CONFIGFS, hba_slots
from tests.contract.target_contract import INITIATOR, chap
from tests.functional.iscsi import NO_CHAP_OFFERED, Node, wait_for

PORTAL = Portal("127.0.0.1")


def _spec(make_backing) -> ExportSpec:
    return ExportSpec(str(uuid.uuid4()), make_backing(), (PORTAL,))


def test_empty_backstore_left_by_a_crash_is_reused(backend, make_backing, tamper):
    spec = _spec(make_backing)
    first = CONFIGFS / "core" / f"fileio_{hba_slots(backend.prefix, spec.volume_id)[0]}"
    first.mkdir()                       # an HBA whose storage object never came
    backend.export(spec)
    assert (first / volume_name(spec.volume_id)).is_dir()
    backend.unexport(spec.volume_id)
    assert tamper.leftovers(spec.volume_id) == []


def test_half_created_storage_object_is_replaced(backend, make_backing, tamper):
    spec = _spec(make_backing)
    hba = CONFIGFS / "core" / f"fileio_{hba_slots(backend.prefix, spec.volume_id)[0]}"
    (hba / volume_name(spec.volume_id)).mkdir(parents=True)   # never configured
    (CONFIGFS / "iscsi" / backend.target_iqn(spec.volume_id) / "tpgt_1").mkdir(parents=True)
    backend.export(spec)
    assert backend.drift(spec, []) == []
    backend.unexport(spec.volume_id)
    assert tamper.leftovers(spec.volume_id) == []


def test_mapped_lun_without_its_link_is_repaired(backend, make_backing):
    spec = _spec(make_backing)
    backend.export(spec)
    grant = Grant(INITIATOR, chap())
    acl = CONFIGFS / "iscsi" / backend.target_iqn(spec.volume_id) / "tpgt_1" / "acls" / INITIATOR
    acl.mkdir()
    (acl / "lun_0").mkdir()             # crash between mkdir and symlink
    backend.authorize(spec.volume_id, grant)
    assert backend.drift(spec, [grant]) == []


def test_another_prefix_never_sees_our_storage_objects(backend, make_backing):
    spec = _spec(make_backing)
    backend.export(spec)
    other = LioBackend(prefix="iqn.2010-10.org.iscsiattach.other:")
    assert spec.volume_id not in other.list_exports()
    assert other.unexport(spec.volume_id) is False
    assert backend.drift(spec, []) == []


def test_open_tpg_is_closed_and_its_sessions_dropped(backend, make_backing, tamper):
    spec = _spec(make_backing)
    backend.export(spec)
    # Someone opened the target: dynamic ACLs, no authentication.
    tamper.set_tpg_attribute(spec.volume_id, "generate_node_acls", "1")
    tamper.set_tpg_attribute(spec.volume_id, "authentication", "0")
    intruder = Node(backend.target_iqn(spec.volume_id), PORTAL).setup_without_auth()
    assert intruder.login_retrying().returncode == 0, "the tampered target should admit anyone"
    assert intruder.session_state() == "LOGGED_IN"
    backend.export(spec)                # the repair
    assert backend.drift(spec, []) == []
    assert wait_for(lambda: intruder.session_state() != "LOGGED_IN", 20), \
        "a session admitted while the target was open survived the repair"
    intruder.logout()
    intruder.assert_refused(NO_CHAP_OFFERED)   # authentication is enforced again
    intruder.delete()
