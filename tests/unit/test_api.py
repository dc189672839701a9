"""The REST API over the fake target: bodies, codes, microversions, auth, bad input."""
from __future__ import annotations

import uuid

import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.secret import Secret
from tests.unit.api_client import Client

TOKEN = "t" * 43
PROJECT = "0123456789abcdef0123456789abcdef"
A = "iqn.2004-10.com.example:host-a"
CONNECTOR = {"initiator": A, "ip": "192.0.2.10", "host": "host-a", "platform": "x86_64",
             "os_type": "linux2", "multipath": False, "mountpoint": "/dev/vdb"}


@pytest.fixture
def app(services):
    return build_app(services, Auth("token", Secret(TOKEN)))


@pytest.fixture
def api(app):
    return Client(app, TOKEN)


@pytest.fixture
def volume(api):
    return api.post("/v3/volumes", {"volume": {"size": 1, "name": "data"}}).body["volume"]


def test_versions(api, app):
    root = Client(app, None).get("/")
    assert root.status == 300
    (v,) = root.body["versions"]
    assert (v["id"], v["status"], v["version"], v["min_version"]) == ("v3.0", "CURRENT",
                                                                     "3.54", "3.0")
    assert api.get("/v3/").status == 200
    assert Client(app, None).get("/v3/").status == 401


def test_volume_create_show_list_extend_delete(api, volume):
    assert volume["size"] == 1 and volume["status"] == "available"
    assert volume["multiattach"] is False and volume["bootable"] == "false"
    assert volume["links"][0]["href"].endswith(f"/v3/volumes/{volume['id']}")
    shown = api.get(f"/v3/{PROJECT}/volumes/{volume['id']}")
    assert shown.status == 200 and shown.body["volume"]["id"] == volume["id"]
    assert f"/v3/{PROJECT}/volumes/" in shown.body["volume"]["links"][0]["href"]
    assert api.get("/v3/volumes").body["volumes"][0].keys() == {"id", "name", "links"}
    assert api.get("/v3/volumes/detail").body["volumes"][0]["size"] == 1
    ext = api.post(f"/v3/volumes/{volume['id']}/action", {"os-extend": {"new_size": "2"}})
    assert ext.status == 202 and ext.body is None
    assert api.get(f"/v3/volumes/{volume['id']}").body["volume"]["size"] == 2
    assert api.delete(f"/v3/volumes/{volume['id']}").status == 202
    gone = api.get(f"/v3/volumes/{volume['id']}")
    assert gone.status == 404 and "itemNotFound" in gone.body


def test_attachment_devref_flow_over_http(api, volume, fake_target):
    created = api.post("/v3/attachments", {"attachment": {
        "volume_uuid": volume["id"], "instance_uuid": str(uuid.uuid4())}})
    assert created.status == 200
    att = created.body["attachment"]
    assert att["status"] == "reserved" and att["connection_info"] == {}
    assert att["attached_at"] == "" and att["detached_at"] == ""
    updated = api.put(f"/v3/attachments/{att['id']}", {"attachment": {"connector": CONNECTOR}})
    assert updated.status == 200
    info = updated.body["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "iscsi" and info["auth_method"] == "CHAP"
    assert info["auth_password"] == fake_target.inspect(volume["id"]).acls[A].chap.password.reveal()
    done = api.post(f"/v3/attachments/{att['id']}/action", {"os-complete": None})
    assert done.status == 204 and done.body is None
    shown = api.get(f"/v3/attachments/{att['id']}").body["attachment"]
    assert shown["status"] == "attached" and shown["attached_at"]
    assert shown["connection_info"] == {}          # the secret is not re-served on show
    vol = api.get(f"/v3/volumes/{volume['id']}").body["volume"]
    assert vol["status"] == "in-use" and vol["attachments"][0]["attachment_id"] == att["id"]
    assert vol["attachments"][0]["device"] == "/dev/vdb"
    deleted = api.delete(f"/v3/{PROJECT}/attachments/{att['id']}")
    assert deleted.status == 200 and deleted.body == {"attachments": []}
    assert api.delete(f"/v3/attachments/{att['id']}").status == 200    # again: success
    assert fake_target.inspect(volume["id"]) is None


def test_create_with_connector_and_mode(api, volume, fake_target):
    reply = api.post("/v3/attachments", {"attachment": {
        "volume_uuid": volume["id"], "connector": CONNECTOR, "mode": "ro"}})
    assert reply.status == 200
    assert reply.body["attachment"]["connection_info"]["access_mode"] == "ro"
    assert fake_target.inspect(volume["id"]).acls[A].mapped_luns == {0: True}


def test_lists_and_filters(api, volume):
    a = api.post("/v3/attachments", {"attachment": {"volume_uuid": volume["id"]}}).body
    listed = api.get(f"/v3/attachments?volume_id={volume['id']}").body["attachments"]
    assert listed == [{"id": a["attachment"]["id"], "status": "reserved", "instance": None,
                       "volume_id": volume["id"]}]
    assert api.get("/v3/attachments?attach_status=attached").body["attachments"] == []
    assert "connection_info" in api.get("/v3/attachments/detail").body["attachments"][0]
    assert api.get("/v3/attachments?limit=0").body["attachments"] == []


def test_microversions_gate_the_attachments_api(app, volume):
    old = Client(app, TOKEN, "3.26")
    assert old.get("/v3/attachments").status == 404
    body = {"attachment": {"volume_uuid": volume["id"], "mode": "ro"}}
    assert Client(app, TOKEN, "3.53").post("/v3/attachments", body).status == 400
    bad = Client(app, TOKEN, "3.99").get("/v3/attachments")
    assert bad.status == 406 and "computeFault" in bad.body
    ok = Client(app, TOKEN, "latest").get("/v3/attachments")
    assert ok.status == 200 and ok.headers["OpenStack-API-Version"] == "volume 3.54"
    assert ok.headers["Vary"] == "OpenStack-API-Version"
    att = Client(app, TOKEN, "3.27").post("/v3/attachments", {"attachment": {
        "volume_uuid": volume["id"], "connector": CONNECTOR}}).body["attachment"]
    early = Client(app, TOKEN, "3.43").post(f"/v3/attachments/{att['id']}/action",
                                            {"os-complete": None})
    assert early.status == 404


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN[:-1]])
def test_requests_without_the_token_refused_and_change_nothing(app, services, token):
    client = Client(app, token)
    reply = client.post("/v3/volumes", {"volume": {"size": 1}})
    assert reply.status == 401 and "unauthorized" in reply.body
    assert services.volume_service.list_volumes() == []


@pytest.mark.parametrize("path,body,status", [
    ("/v3/volumes", {"volume": {"size": 0}}, 400),
    ("/v3/volumes", {"volume": {"size": "big"}}, 400),
    ("/v3/volumes", {"volume": {"size": 1, "colour": "red"}}, 400),
    ("/v3/volumes", {"volume": {"size": 1, "snapshot_id": str(uuid.uuid4())}}, 400),
    ("/v3/volumes", {"size": 1}, 400),
    ("/v3/volumes", [1, 2], 400),
    ("/v3/attachments", {"attachment": {}}, 400),
    ("/v3/attachments", {"attachment": {"volume_uuid": "x"}}, 400),
    ("/v3/attachments", {"attachment": {"volume_uuid": str(uuid.uuid4())}}, 404),
    ("/v3/attachments", {"attachment": {"volume_uuid": str(uuid.uuid4()),
                                        "connector": {"initiator": "bad iqn"}}}, 400),
])
def test_bad_input_is_a_clear_4xx_and_changes_nothing(api, services, path, body, status):
    reply = api.post(path, body)
    assert reply.status == status, reply.body
    (fault,) = reply.body.values()
    assert fault["code"] == status and fault["message"]
    assert services.volume_service.list_volumes() == []
    assert services.attachment_service.list_attachments() == []


def test_malformed_and_oversized_bodies(api):
    assert api.post("/v3/volumes", raw=b"{not json").status == 400
    assert api.post("/v3/volumes", raw=b"x" * (70 << 10)).status == 413
    assert api.get("/v3/nothing-here").status == 404
    assert api.request("PATCH", "/v3/volumes").status == 405


def test_conflicts_are_409(api, volume):
    api.post("/v3/attachments", {"attachment": {"volume_uuid": volume["id"],
                                                "instance_uuid": str(uuid.uuid4())}})
    reply = api.post("/v3/attachments", {"attachment": {"volume_uuid": volume["id"],
                                                        "instance_uuid": str(uuid.uuid4())}})
    assert reply.status == 409 and "conflictingRequest" in reply.body
    assert api.delete(f"/v3/volumes/{volume['id']}").status == 409


def test_noauth_accepts_user_project_tokens(services):
    app = build_app(services, Auth("noauth"))
    client = Client(app, "admin:" + PROJECT)
    vol = client.post("/v3/volumes", {"volume": {"size": 1}}).body["volume"]
    assert vol["os-vol-tenant-attr:tenant_id"] == PROJECT
    assert Client(app, None).get("/v3/volumes").status == 401


def test_unexpected_errors_are_a_generic_500(api, services, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("internal detail that must not leak")
    monkeypatch.setattr(services.volume_service, "list_volumes", boom)
    reply = api.get("/v3/volumes")
    assert reply.status == 500 and "computeFault" in reply.body
    assert "internal detail" not in str(reply.body)
    assert reply.headers["x-openstack-request-id"].startswith("req-")


def test_metrics_and_health_without_a_token(services, fake_target):
    from iscsiattach.api.metrics import Metrics
    metrics = Metrics(services.store)
    app = build_app(services, Auth("token", Secret(TOKEN)), metrics)
    api, anon = Client(app, TOKEN), Client(app, None)
    assert anon.get("/healthz").status == 503              # not ready before reconcile
    metrics.reconciled(services.reconciler.run())
    metrics.ready = True
    vid = api.post("/v3/volumes", {"volume": {"size": 1}}).body["volume"]["id"]
    api.post("/v3/attachments", {"attachment": {"volume_uuid": vid, "connector": CONNECTOR}})
    api.post("/v3/volumes", {"volume": {"size": 0}})
    health = anon.get("/healthz")
    assert health.status == 200 and health.body["ready"] is True
    assert health.body["counts"] == {"volumes": 1, "attachments": 1, "exports": 1, "acls": 1}
    assert health.body["last_reconcile"]["volumes_checked"] == 0
    text = metrics.exposition().decode()
    assert 'iscsiattach_operations_total{kind="volume-create",outcome="success"} 1.0' in text
    assert 'iscsiattach_operations_total{kind="volume-create",outcome="client_error"} 1.0' in text
    assert "iscsiattach_volumes 1.0" in text and "iscsiattach_acls 1.0" in text
    assert "iscsiattach_reconcile_runs_total 1.0" in text
    scraped = anon.request("GET", "/metrics")
    assert scraped.status == 200 and "iscsiattach_lio_lock_wait_seconds" in scraped.body
    assert scraped.headers["Content-Type"].startswith("text/plain")


def test_service_log_lines_carry_the_request_id(api, volume, caplog):
    import logging

    from iscsiattach.api.app import RequestIdFilter
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO)
    reply = api.post("/v3/attachments", {"attachment": {"volume_uuid": volume["id"],
                                                        "connector": CONNECTOR}})
    rid = reply.headers["x-openstack-request-id"]
    lines = [r for r in caplog.records if "connected volume" in r.getMessage()]
    assert lines and lines[0].request_id == rid
    secret = reply.body["attachment"]["connection_info"]["auth_password"]
    assert secret not in caplog.text


def test_a_traceback_is_lines_of_its_record():
    """Every line a log line: a traceback's lines carry the record's prefix."""
    import logging

    from iscsiattach.api.logsafe import SafeFormatter
    formatter = SafeFormatter("%(levelname)s %(name)s [-] %(message)s")
    try:
        raise ValueError("bad\nline")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("\x1b[2J",),
                                   sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "ERROR x [-] failed \\x1b[2J"
    assert len(lines) > 2 and all(line.startswith("ERROR x [-] | ") for line in lines[1:])
    # A newline in the exception's text stays inside the record's lines.
    assert lines[-2:] == ["ERROR x [-] | ValueError: bad", "ERROR x [-] | line"]


def test_a_volume_shows_how_lio_serves_it(api, services, monkeypatch):
    vol = api.post("/v3/volumes", {"volume": {"size": 1}}).body["volume"]
    assert vol["iscsiattach:backstore"] == "fileio-direct"
    monkeypatch.setattr(services.volume_backend, "file_io", "page-cache")
    shown = api.get(f"/v3/volumes/{vol['id']}").body["volume"]
    assert shown["iscsiattach:backstore"] == "fileio-page-cache"
