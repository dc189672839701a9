"""Our tables against cinderclient's own, byte for byte: cinderclient's shell
functions (do_show, do_list, do_attachment_show, do_attachment_list) and our
CLI read the same volumes and attachments from the same server, and must
print the same bytes. JSON output never carries a fake secret."""
from __future__ import annotations

import argparse
import json
import threading
import uuid

import pytest
from cinderclient import client as cinder
from cinderclient.contrib import noauth
from cinderclient.v3 import shell as cinder_shell
from keystoneauth1 import session

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.cli import table
from iscsiattach.cli.main import main

PROJECT = "0123456789abcdef0123456789abcdef"
A = "iqn.2004-10.com.example:host-a"
B = "iqn.2004-10.com.example:host-b"


@pytest.fixture
def world(services, monkeypatch, tmp_path):
    """A noauth server; cinderclient and our CLI both pointed at it."""
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("noauth")))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/v3"
    # cinderclient's noauth puts the project in the path: ours the same.
    monkeypatch.setenv("ISCSIATTACH_URL", f"{url}/{PROJECT}")
    monkeypatch.setenv("ISCSIATTACH_TOKEN", f"admin:{PROJECT}")      # as noauth takes it
    monkeypatch.setenv("CINDERCLIENT_UUID_CACHE_DIR", str(tmp_path / "cinder-cache"))
    monkeypatch.delenv("ALL_TENANTS", raising=False)
    auth = noauth.CinderNoAuthPlugin(user_id="admin", project_id=PROJECT,
                                     endpoint=url)
    yield cinder.Client("3.54", session=session.Session(auth=auth))
    srv.shutdown()
    srv.server_close()


def ours(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def theirs(capsys, fn, **args) -> str:
    capsys.readouterr()
    fn(**args)
    return capsys.readouterr().out


def list_args() -> dict:
    return {"display_name": None, "tenant": None, "all_tenants": 0, "name": None,
            "status": None, "bootable": None, "migration_status": None, "metadata": None,
            "image_metadata": None, "group_id": None, "fields": None, "marker": None,
            "limit": None, "sort": None, "with_count": False}


def cinder_show(cs, vid):
    return lambda: cinder_shell.do_show(cs, argparse.Namespace(volume=vid))


def cinder_list(cs):
    return lambda: cinder_shell.do_list(cs, argparse.Namespace(**list_args()))


def test_volume_list_empty_is_cinderclients(world, capsys):
    want = theirs(capsys, cinder_list(world))
    assert "Consumes Quota" in want             # no volume: no column left out
    assert ours(capsys, "volume-list") == want


def test_volume_show_and_list_are_cinderclients(world, capsys):
    cs = world
    plain = cs.volumes.create(1, name="data").id
    unnamed = cs.volumes.create(2).id
    wide = cs.volumes.create(1, name="漢字-donnée-e\u0301").id
    multi = json.loads(ours(capsys, "--format", "json", "volume-create", "1", "--multiattach",
                            "--name", "shared"))["id"]
    # One volume in use by two servers (attachments listed), one reserved.
    servers = []
    for initiator in (A, B):
        server = str(uuid.uuid4())
        att = cs.attachments.create(multi, {"initiator": initiator, "host": "h",
                                            "platform": "x86_64", "os_type": "linux2",
                                            "multipath": False, "mountpoint": "/dev/vdb",
                                            "ip": None}, server, mode="rw")
        cs.attachments.complete(att["id"])
        servers.append(server)
    cs.attachments.create(unnamed, None, str(uuid.uuid4()))
    for vid in (plain, unnamed, wide, multi):
        want = theirs(capsys, cinder_show(cs, vid))
        assert ours(capsys, "volume-show", vid) == want, vid
    shown = ours(capsys, "volume-show", multi)
    assert "links" not in shown and all(s in shown for s in servers)
    assert max(len(line) for line in shown.splitlines()) < 120    # not 200+ wide any more
    want = theirs(capsys, cinder_list(cs))
    assert "Consumes Quota" not in want and ",".join(servers) in want
    assert ours(capsys, "volume-list") == want


def test_attachment_show_and_list_are_cinderclients(world, capsys):
    cs = world
    vid = cs.volumes.create(1).id
    reserved = cs.attachments.create(vid, None, str(uuid.uuid4()))["id"]
    vid2 = cs.volumes.create(1).id
    conn = cs.attachments.create(vid2, {"initiator": A, "host": "h", "platform": "x86_64",
                                        "os_type": "linux2", "multipath": False,
                                        "mountpoint": None, "ip": None}, None)["id"]
    for att in (reserved, conn):
        want = theirs(capsys, lambda a=att: cinder_shell.do_attachment_show(
            cs, argparse.Namespace(attachment=a)))
        assert ours(capsys, "--show-secrets", "attachment-show", att) == want
    args = argparse.Namespace(all_tenants=0, tenant=None, volume_id=None, status=None,
                              marker=None, limit=None, sort=None, filters=None)
    want = theirs(capsys, lambda: cinder_shell.do_attachment_list(cs, args))
    assert ours(capsys, "attachment-list") == want and conn in want and reserved in want


def test_json_never_holds_a_fake_secret(world, capsys, fake_target):
    cs = world
    vid = cs.volumes.create(1).id
    out = ours(capsys, "--format", "json", "attachment-create", vid, str(uuid.uuid4()),
               "--connect", "True", "--initiator", A)
    info = json.loads(out)["connection_info"]
    assert "***" not in out
    assert info["auth_password"] is None and info["auth_password_withheld"] is True
    assert info["auth_username"]                    # the user name is no secret
    att = json.loads(out)["id"]
    # The same with the output options after the command (update answers
    # with the secret, as create does).
    out = ours(capsys, "attachment-update", att, "--initiator", A, "--format", "json")
    info = json.loads(out)["connection_info"]
    assert "***" not in out and info["auth_password"] is None
    assert info["auth_password_withheld"] is True
    out = ours(capsys, "attachment-update", att, "--initiator", A, "--format", "json",
               "--show-secrets")
    secret = fake_target.inspect(vid).acls[A].chap.password.reveal()
    info = json.loads(out)["connection_info"]
    assert info["auth_password"] == secret and "auth_password_withheld" not in info
    # show never gets the secret from the daemon: nothing to withhold.
    out = ours(capsys, "attachment-show", att, "--format", "json")
    assert "***" not in out and "auth_password" not in json.loads(out)["connection_info"]
    # A table is for a person: the mask stays there.
    assert "| auth_password      | ***" in ours(capsys, "attachment-update", att,
                                                 "--initiator", A)


def test_output_options_before_or_after_the_command(world, capsys):
    vid = world.volumes.create(1).id
    before = ours(capsys, "--format", "json", "volume-show", vid)
    assert ours(capsys, "volume-show", vid, "--format", "json") == before
    assert ours(capsys, "volume-show", "--format", "json", vid) == before
    # Given twice, the one after the command wins.
    assert ours(capsys, "--format", "table", "volume-show", vid, "--format", "json") == before
    assert ours(capsys, "--format", "json", "volume-show", vid, "--format", "table") != before


@pytest.mark.parametrize("rows,sort", [
    ([["b", None], ["a", "x\nlonger line"], ["c", "漢字é"]], 0),
    ([["z", 1, True], ["y", 22, False]], None),
    ([], 0),
    ([["tab\there", "e\u0301\u200b"], ["\x1b[31mred", ""]], 0),
])
def test_render_is_prettytables(rows, sort):
    import prettytable
    header = ["ID", "Value", "Other"][:len(rows[0]) if rows else 2]
    pt = prettytable.PrettyTable(header, caching=False)
    pt.align = "l"
    for row in rows:
        pt.add_row(row)
    want = pt.get_string(sortby=header[sort] if sort is not None else None)
    assert table.render(header, rows, sort) == want
