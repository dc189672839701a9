"""Validation of what crosses the backend interface, and drift computation."""
from __future__ import annotations

import uuid

import pytest

from iscsiattach.exception import InvalidInput
from iscsiattach.model import (
    SECURE_TPG_ATTRIBUTES,
    AclState,
    Backing,
    BackingKind,
    ChapCredentials,
    ExportSpec,
    ExportState,
    Grant,
    Portal,
    naa_wwn,
    validate_prefix,
)
from iscsiattach.secret import Secret
from iscsiattach.targets import compute_drift
from iscsiattach.targets.base import TargetBackend
from iscsiattach.targets.fake import FakeBackend

VID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.mark.parametrize("text,ip,port", [
    ("10.0.0.1", "10.0.0.1", 3260), ("10.0.0.1:3261", "10.0.0.1", 3261),
    ("::1", "::1", 3260), ("[::1]:3262", "::1", 3262),
    ("[fe80:0:0::1]", "fe80::1", 3260), (" 192.168.1.5 ", "192.168.1.5", 3260)])
def test_portal_parse(text, ip, port):
    p = Portal.parse(text)
    assert (p.ip, p.port) == (ip, port)


@pytest.mark.parametrize("text", ["", "host.example", "10.0.0.1:0", "10.0.0.1:70000",
                                  "[::1", "[::1]x", "10.0.0.256", "224.0.0.1", "1.2.3.4:a"])
def test_bad_portal_refused(text):
    with pytest.raises(InvalidInput):
        Portal.parse(text)


def test_portal_str_is_cinder_form():
    assert str(Portal("10.0.0.1")) == "10.0.0.1:3260"
    assert str(Portal("2001:db8::5", 3261)) == "[2001:db8::5]:3261"


@pytest.mark.parametrize("name", ["iqn.2004-10.com.example:host1",
                                  "iqn.1993-08.org.debian:01:76113bb336ab",
                                  "iqn.2010-10.org.openstack", "eui.02004567a425678d",
                                  "naa.52004567ba64678d"])
def test_valid_initiator_names(name):
    assert Grant(name, ChapCredentials("u", Secret("s" * 12))).initiator == name


@pytest.mark.parametrize("prefix",
                         ["iqn.2010-10.org.openstack", "openstack:", "iqn.2010-10.Org.x:"])
def test_bad_prefix_refused(prefix):
    with pytest.raises(InvalidInput):
        validate_prefix(prefix)


def test_chap_rules_never_echo_the_secret():
    for bad in ["short", "has space in it!", "x" * 256, 'quote"d-secret-1']:
        with pytest.raises(InvalidInput) as err:
            ChapCredentials("user", Secret(bad))
        assert bad not in str(err.value)
    with pytest.raises(InvalidInput):
        ChapCredentials("user", "plain-string-secret")   # must be a Secret
    with pytest.raises(InvalidInput, match="differ"):
        ChapCredentials("u", Secret("same-secret-123"), "t", Secret("same-secret-123"))
    with pytest.raises(InvalidInput, match="both"):
        ChapCredentials("u", Secret("a-secret-12345"), "t", None)


def test_secret_is_masked_everywhere():
    s = Secret("canary-0123456789")
    creds = ChapCredentials("user", s)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr(creds), repr(Grant(
            "iqn.2004-10.com.example:h", creds))):
        assert "canary" not in text
    assert s.reveal() == "canary-0123456789"
    assert s == Secret("canary-0123456789") and s != Secret("canary-0123456788")
    assert len(Secret.generate()) >= 24 and Secret.generate() != Secret.generate()


@pytest.mark.parametrize("path,size", [("relative.img", 1 << 20), ("/a,b.img", 1 << 20),
                                       ("/x/../etc/passwd", 1 << 20), ("/a.img", 0),
                                       ("/a.img", 1000), ("/a.img", None)])
def test_bad_file_backing_refused(path, size):
    with pytest.raises(InvalidInput):
        Backing(BackingKind.FILE, path, size)


def test_export_spec_rules():
    b = Backing(BackingKind.FILE, "/v.img", 1 << 20)
    with pytest.raises(InvalidInput, match="portal"):
        ExportSpec(VID, b, ())
    with pytest.raises(InvalidInput, match="duplicate"):
        ExportSpec(VID, b, (Portal("10.0.0.1"), Portal("10.0.0.1")))
    with pytest.raises(InvalidInput):
        ExportSpec(VID.upper(), b, (Portal("10.0.0.1"),))


def test_naa_wwn_follows_the_kernel_rule():
    # 0x6 + company id 001405 + 25 hex digits of the unit serial = 32 digits.
    wwn = naa_wwn(VID)
    assert wwn == "naa.60014051b4e28ba2fa111d2883f0016d"
    assert len(wwn) == len("naa.") + 32


def _state(**over) -> ExportState:
    spec_backing = Backing(BackingKind.FILE, "/v.img", 1 << 20)
    base = dict(volume_id=VID, target_iqn="iqn.2010-10.org.openstack:volume-" + VID,
                tpg_enabled=True, tpg_attributes=dict(SECURE_TPG_ATTRIBUTES),
                auth_method="CHAP", portals=frozenset({Portal("10.0.0.1")}),
                lun0_backing=spec_backing, unit_serial=VID, acls={})
    base.update(over)
    return ExportState(**base)


def test_compute_drift_names_each_difference():
    spec = ExportSpec(VID, Backing(BackingKind.FILE, "/v.img", 1 << 20), (Portal("10.0.0.1"),))
    g = Grant("iqn.2004-10.com.example:h", ChapCredentials("u", Secret("secret-0123456")))
    assert compute_drift(spec, [], _state()) == []
    found = _state(lun0_backing=Backing(BackingKind.FILE, "/v.img", 2 << 20),
                   unit_serial=str(uuid.uuid4()),
                   acls={g.initiator: AclState(g.initiator, g.chap, {0: True}),
                         "iqn.2004-10.com.example:x": AclState("iqn.2004-10.com.example:x",
                                                               None, {})})
    kinds = [d.kind for d in compute_drift(spec, [g], found)]
    assert kinds == ["lun-size", "unit-serial", "acl-mapping", "acl-extra"]
    wrong = _state(acls={g.initiator: AclState(
        g.initiator, ChapCredentials("u", Secret("other-secret-01")), {0: False})})
    drift = compute_drift(spec, [g], wrong)
    assert [d.kind for d in drift] == ["acl-chap"]
    assert "secret-0123456" not in str(drift) and "other-secret" not in str(drift)


def test_fake_is_a_target_backend():
    assert isinstance(FakeBackend(), TargetBackend)


@pytest.mark.parametrize("name", ["iqn.2004-10.com.example:host\n", "iqn.2004-10.com.ex_ample:h",
                                  "iqn.2004-10.com:host", "naa.32004567ba64678d",
                                  "naa.60014051b4e28ba2fa111d2883f0016d"])
def test_names_rtslib_would_refuse_are_refused(name):
    with pytest.raises(InvalidInput):
        Grant(name, ChapCredentials("u", Secret("s" * 12)))


def test_null_prefixed_chap_values_refused():
    # The kernel reads any value starting with NULL as "not set".
    with pytest.raises(InvalidInput):
        ChapCredentials("NULLuser", Secret("a-secret-12345"))
    with pytest.raises(InvalidInput):
        ChapCredentials("user", Secret("NULL-secret-12345"))


def test_read_only_must_be_a_bool():
    with pytest.raises(InvalidInput):
        Grant("iqn.2004-10.com.example:h", ChapCredentials("u", Secret("s" * 12)), "true")


def test_block_backing_has_no_size_and_bad_kinds_refused():
    assert Backing(BackingKind.BLOCK, "/dev/loop0", 123).size is None
    with pytest.raises(InvalidInput):
        Backing("file", "/v.img", 1 << 20)
    with pytest.raises(InvalidInput):
        Backing(BackingKind.FILE, "/" + "x" * 255, 1 << 20)
    with pytest.raises(InvalidInput):
        Portal("fe80::1%eth0")
