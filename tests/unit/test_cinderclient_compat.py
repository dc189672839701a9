"""An existing Cinder client, unchanged, against our API (python-cinderclient)."""
from __future__ import annotations

import threading
import uuid

import pytest
from cinderclient import client as cinder, exceptions as cinder_exc
from cinderclient.contrib import noauth
from keystoneauth1 import session

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server

PROJECT = "0123456789abcdef0123456789abcdef"
A = "iqn.2004-10.com.example:host-a"


@pytest.fixture
def cinder_client(services):
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("noauth")))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    auth = noauth.CinderNoAuthPlugin(user_id="admin", project_id=PROJECT,
                                     endpoint=f"http://127.0.0.1:{srv.server_port}/v3")
    yield cinder.Client("3.54", session=session.Session(auth=auth))
    srv.shutdown()
    srv.server_close()


def test_cinderclient_runs_the_devref_workflow(cinder_client, fake_target):
    c = cinder_client
    vol = c.volumes.create(1, name="from-cinderclient")
    assert c.volumes.get(vol.id).status == "available"
    connector = {"initiator": A, "ip": "192.0.2.1", "host": "h1", "platform": "x86_64",
                 "os_type": "linux2", "multipath": False, "mountpoint": "/dev/vdb"}
    att = c.attachments.create(vol.id, connector, str(uuid.uuid4()), mode="rw")
    info = att["connection_info"]             # cinderclient hands back a dict here
    assert info["driver_volume_type"] == "iscsi" and info["target_lun"] == 0
    assert info["auth_password"] == fake_target.inspect(vol.id).acls[A].chap.password.reveal()
    att_id = att["id"]
    c.attachments.complete(att_id)
    assert c.attachments.show(att_id).status == "attached"
    assert [a.id for a in c.attachments.list(search_opts={"volume_id": vol.id})] == [att_id]
    assert c.volumes.get(vol.id).status == "in-use"
    c.attachments.delete(att_id)
    c.volumes.extend(vol, 2)
    assert c.volumes.get(vol.id).size == 2
    c.volumes.delete(vol)
    with pytest.raises(cinder_exc.NotFound):
        c.volumes.get(vol.id)


def test_cinderclient_sees_our_conflicts(cinder_client):
    c = cinder_client
    vol = c.volumes.create(1)
    c.attachments.create(vol.id, None, str(uuid.uuid4()))
    with pytest.raises(cinder_exc.ClientException) as err:
        c.attachments.create(vol.id, None, str(uuid.uuid4()))
    assert err.value.code == 409 and "not multiattach" in str(err.value)
