"""Who is logged in: LIO's ACL info parsed, the fake's sessions (which go
with their ACL, as LIO's do), the lister's join with the store, and what
the API, the CLI and the metrics make of it."""
from __future__ import annotations

import json

import jsonschema
import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.metrics import Metrics
from iscsiattach.api.routes import build_app
from iscsiattach.api.schemas import SESSION
from iscsiattach.model import ChapCredentials, TargetSession
from iscsiattach.secret import Secret
from iscsiattach.targets.lio.inspect import parse_session
from tests.unit.api_client import Client
from tests.unit.test_attachments import A, B, connector, instance

# Linux 6.1's lio_target_nacl_info_show, for a session with one connection.
LOGGED_IN = """InitiatorName: iqn.2004-10.com.example:host-a
InitiatorAlias: host-a
LIO Session ID: 7   ISID: 0x00 02 3d 00 00 00  TSIH: 3  SessionType: Normal
Session State: TARG_SESS_STATE_LOGGED_IN
---------------------[iSCSI Session Values]-----------------------
  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT
 0x00000000   0x00000000   0x00000012   0x00000091   0x00000011   0xffffffff
----------------------[iSCSI Connections]-------------------------
CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN   Address 192.0.2.7 TCP  StatSN: 0x0f
"""
NO_SESSION = "No active iSCSI Session for Initiator Endpoint: iqn.2004-10.com.example:host-a\n"


def test_lio_info_of_a_logged_in_initiator():
    assert parse_session(A, LOGGED_IN) == TargetSession(A, 7, "LOGGED_IN", ("192.0.2.7",))
    assert parse_session(A, NO_SESSION) is None


def test_two_connections_are_two_addresses():
    two = LOGGED_IN + LOGGED_IN.splitlines()[-1].replace("CID: 0", "CID: 1").replace(
        "192.0.2.7", "2001:db8::7") + "\n"
    assert parse_session(A, two).addresses == ("192.0.2.7", "2001:db8::7")


def _connected(services, initiator, vol=None):
    svc = services.attachment_service
    vol = vol or services.volume_service.create(1, multiattach=True)
    att, info = svc.create(vol.id, instance(), connector(initiator))
    return vol, att, ChapCredentials(info["auth_username"], Secret(info["auth_password"]))


def test_the_fake_refuses_a_login_lio_would_refuse(services, fake_target):
    vol, _, chap = _connected(services, A)
    with pytest.raises(PermissionError):
        fake_target.login(vol.id, B, chap)                      # no ACL
    with pytest.raises(PermissionError):
        fake_target.login(vol.id, A, ChapCredentials(chap.userid, Secret("x" * 16)))
    assert fake_target.sessions(vol.id) == []


def test_a_session_is_joined_with_its_attachment_and_goes_with_it(services, fake_target):
    vol, att, chap = _connected(services, A)
    _, other, _ = _connected(services, B, vol)
    fake_target.login(vol.id, A, chap, "192.0.2.7")
    lister = services.sessions
    [s] = lister.list_sessions()
    assert (s.volume_id, s.initiator, s.addresses, s.state) == \
        (vol.id, A, ("192.0.2.7",), "LOGGED_IN")
    assert s.auth_username == chap.userid and s.attachment_ids == (att.id,)
    assert s.target_iqn == fake_target.target_iqn(vol.id)
    assert lister.list_sessions(vol.id) == [s]              # seen since: the first look
    assert lister.for_attachment(services.attachment_service.show(other.id)) == []
    services.attachment_service.delete(att.id)              # its ACL goes, and the session
    assert lister.list_sessions() == [] and lister.by_volume() == {vol.id: []}


def test_a_new_session_is_seen_anew(services, fake_target):
    vol, _, chap = _connected(services, A)
    first = fake_target.login(vol.id, A, chap)
    [s1] = services.sessions.list_sessions()
    second = fake_target.login(vol.id, A, chap)             # a login again: a new session
    [s2] = services.sessions.list_sessions()
    assert first.session_id != second.session_id and s2.session_id == second.session_id
    assert s2.seen_since >= s1.seen_since
    assert len(services.sessions._seen) == 1                # the old one forgotten


def test_api_cli_and_metrics_show_them(services, fake_target, capsys, monkeypatch):
    vol, att, chap = _connected(services, A)
    fake_target.login(vol.id, A, chap, "192.0.2.7")
    api = Client(build_app(services, Auth("token", Secret("t" * 32))), "t" * 32)
    reply = api.get(f"/v3/sessions?volume_id={vol.id}")
    assert reply.status == 200
    [body] = reply.body["sessions"]
    jsonschema.validate(body, SESSION)
    assert body["attachment_ids"] == [att.id]
    shown = api.get(f"/v3/attachments/{att.id}").body["attachment"]
    assert shown["iscsiattach:sessions"] == [body]
    assert api.get("/v3/sessions?volume_id=nope").status == 400
    metrics = Metrics(services.store, services.sessions).exposition().decode()
    assert f'iscsiattach_sessions{{volume_id="{vol.id}"}} 1.0' in metrics
    assert json.dumps(body["seen_since"]) and "auth_password" not in json.dumps(body)
