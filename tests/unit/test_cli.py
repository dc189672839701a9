"""The iscsiattach CLI against a real HTTP server over the fake target."""
from __future__ import annotations

import json
import threading
import uuid

import pytest

from iscsiattach.api.app import Auth
from iscsiattach.api.routes import build_app
from iscsiattach.api.server import make_server
from iscsiattach.cli.main import main
from iscsiattach.secret import Secret

TOKEN = "cli-token-" + "x" * 30
A = "iqn.2004-10.com.example:host-a"


@pytest.fixture
def server(services, monkeypatch):
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret(TOKEN))))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    monkeypatch.setenv("ISCSIATTACH_URL", f"http://127.0.0.1:{srv.server_port}/v3")
    monkeypatch.setenv("ISCSIATTACH_TOKEN", TOKEN)
    yield srv
    srv.shutdown()
    srv.server_close()


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_devref_commands_end_to_end(server, capsys, fake_target):
    code, out, _ = cli(capsys, "--format", "json", "volume-create", "1", "--name", "data")
    assert code == 0
    vid = json.loads(out)["id"]
    inst = str(uuid.uuid4())
    code, out, _ = cli(capsys, "attachment-create", vid, inst)
    assert code == 0 and "| status" in out and "reserved" in out
    assert "auth_password" not in out                       # not connected: no info table
    att = [line.split("|")[2].strip() for line in out.splitlines() if "| id " in line][0]

    code, out, _ = cli(capsys, "attachment-update", att, "--initiator", A, "--ip", "192.0.2.1",
                       "--host", "h1", "--mountpoint", "/dev/vdb")
    assert code == 0 and "| target_iqn" in out and "| auth_password      | ***" in out
    secret = fake_target.inspect(vid).acls[A].chap.password.reveal()
    assert secret not in out

    code, out, _ = cli(capsys, "--format", "json", "--show-secrets", "attachment-show", att)
    assert json.loads(out)["status"] == "attaching"
    code, out, _ = cli(capsys, "attachment-complete", att)
    assert code == 0 and out == ""
    code, out, _ = cli(capsys, "attachment-list", "--volume-id", vid)
    assert "attached" in out and inst in out and "Server ID" in out
    code, out, _ = cli(capsys, "volume-extend", vid, "2")
    assert code == 0
    code, out, _ = cli(capsys, "--format", "json", "volume-show", vid)
    assert json.loads(out)["size"] == 2 and json.loads(out)["status"] == "in-use"
    assert cli(capsys, "attachment-delete", att)[0] == 0
    assert cli(capsys, "volume-delete", vid)[0] == 0
    assert "data" not in cli(capsys, "volume-list")[1]


def test_connect_in_one_call_prints_the_secret_only_when_asked(server, capsys, fake_target):
    vid = json.loads(cli(capsys, "--format", "json", "volume-create", "1")[1])["id"]
    code, out, _ = cli(capsys, "--format", "json", "--show-secrets", "attachment-create", vid,
                       str(uuid.uuid4()), "--connect", "True", "--initiator", A,
                       "--mode", "ro", "--multipath", "False")
    info = json.loads(out)["connection_info"]
    assert code == 0 and info["access_mode"] == "ro"
    assert info["auth_password"] == fake_target.inspect(vid).acls[A].chap.password.reveal()


@pytest.mark.parametrize("argv,code,text", [
    (["volume-show", "not-a-uuid"], 1, "could not be found"),
    (["volume-create", "0"], 2, "invalid size"),
    (["attachment-create", str(uuid.uuid4()), str(uuid.uuid4())], 1, "not found"),
    (["attachment-update", str(uuid.uuid4()), "--initiator", "bad iqn"], 2, "invalid"),
])
def test_errors_are_one_line_and_non_zero(server, capsys, argv, code, text):
    rc, out, err = cli(capsys, *argv)
    assert rc == code and out == ""
    assert err.count("\n") == 1 and err.startswith("iscsiattach: error: ") and text in err


def test_wrong_token_and_unreachable_daemon(server, capsys, monkeypatch):
    monkeypatch.setenv("ISCSIATTACH_TOKEN", "wrong")
    rc, _, err = cli(capsys, "volume-list")
    assert rc == 1 and "HTTP 401" in err
    monkeypatch.setenv("ISCSIATTACH_URL", "http://127.0.0.1:9/v3")
    rc, _, err = cli(capsys, "volume-list")
    assert rc == 1 and "cannot reach iscsiattachd" in err


def test_bad_arguments_exit_2_and_say_why(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["attachment-create", "only-one-arg"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["attachment-create", "v", "i", "--connect", "maybe"])
    assert "expected True or False" in capsys.readouterr().err


def test_status_shows_health(services, capsys, monkeypatch):
    from iscsiattach.api.metrics import Metrics
    metrics = Metrics(services.store)
    metrics.reconciled(services.reconciler.run())
    metrics.ready = True
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret(TOKEN)), metrics))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    monkeypatch.setenv("ISCSIATTACH_URL", f"http://127.0.0.1:{srv.server_port}/v3")
    try:
        code, out, _ = cli(capsys, "status")
        assert code == 0 and "| ready" in out and "True" in out and "count volumes" in out
        code, out, _ = cli(capsys, "--format", "json", "status")
        assert json.loads(out)["last_reconcile"]["errors"] == 0
    finally:
        srv.shutdown()
        srv.server_close()


def test_cli_over_a_unix_socket(services, capsys, monkeypatch, tmp_path):
    import os
    import stat
    sock = tmp_path / "run" / "api.sock"
    sock.parent.mkdir()
    srv = make_server(f"unix:{sock}", 0, build_app(services, Auth("token", Secret(TOKEN))))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        monkeypatch.setenv("ISCSIATTACH_URL", f"unix:{sock}")
        monkeypatch.setenv("ISCSIATTACH_TOKEN", TOKEN)
        code, out, _ = cli(capsys, "--format", "json", "volume-create", "1")
        assert code == 0 and json.loads(out)["status"] == "available"
        code, out, _ = cli(capsys, "volume-list")
        assert code == 0 and "available" in out
    finally:
        srv.shutdown()
        srv.server_close()


def test_tls_server(services, tmp_path):
    import shutil
    import ssl
    import subprocess
    import urllib.request
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    srv = make_server("127.0.0.1", 0, build_app(services, Auth("token", Secret(TOKEN))),
                      str(cert), str(key))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(f"https://127.0.0.1:{srv.server_port}/v3/volumes",
                                     headers={"X-Auth-Token": TOKEN})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"volumes": []}
    finally:
        srv.shutdown()
        srv.server_close()


def test_client_serving_only_while_the_daemon_answers(server):
    from iscsiattach.cli.client import Client
    url = f"http://127.0.0.1:{server.server_port}/v3"
    assert Client(url, None, "3.54", timeout=2).serving()   # no token needed at the root
    server.shutdown()
    server.server_close()
    assert not Client(url, None, "3.54", timeout=2).serving()
