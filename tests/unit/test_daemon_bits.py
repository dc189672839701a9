"""sd_notify, the systemd unit, and the daemon's refusals at start."""
from __future__ import annotations

import configparser
import socket
from pathlib import Path

import pytest

from iscsiattach.cmd import daemon, systemd

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "iscsiattachd.service"


def test_notify_sends_to_the_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert systemd.notify("READY=1")
    assert sock.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert systemd.watchdog_interval() == 60.0


def test_unit_is_notify_and_keeps_exports_on_stop():
    unit = configparser.ConfigParser(strict=False)
    unit.read(UNIT)
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure"
    assert "WatchdogSec" in svc and "--config-file" in svc["ExecStart"]
    assert "/sys/kernel/config" in svc["ReadWritePaths"]
    # After= may be given several times (systemd adds them up; configparser
    # would keep only the last): read every line.
    after = " ".join(line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
                     if line.startswith("After="))
    assert "sys-kernel-config.mount" in after.split()
    assert "rtslib-fb-targetctl.service" in after.split()


def test_noauth_on_a_public_address_refuses_to_start(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}/s\n[api]\nlisten = 0.0.0.0\n"
                    "auth_strategy = noauth\n")
    config = daemon.load_config(["--config-file", str(conf)])
    with pytest.raises(Exception, match="noauth needs a loopback"):
        daemon.auth_from_conf(config)
    assert daemon.main(["--config-file", str(conf)]) == 2      # a configuration error
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["iscsiattachd: [api] auth_strategy noauth needs a loopback address or "
                   "a unix: socket to listen on, not '0.0.0.0'"]
    assert not (tmp_path / "s").exists()            # refused before touching any state
    assert daemon.main(["--config-file", str(tmp_path / "missing.conf")]) == 2
    assert "iscsiattachd:" in capsys.readouterr().err


def test_the_stop_line_names_no_request_even_inside_one(caplog, monkeypatch):
    """A signal that lands while the main thread runs a request's context must
    not log "stopping" under that request's id."""
    import logging
    import threading

    from iscsiattach.api.app import REQUEST_ID, RequestIdFilter

    class Server:
        stopped = threading.Event()

        def shutdown(self):
            self.stopped.set()

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    stop, server = threading.Event(), Server()
    handler = daemon.shutdown_handler(stop, server)
    caplog.handler.addFilter(RequestIdFilter())
    token = REQUEST_ID.set("req-inside")
    try:
        with caplog.at_level(logging.INFO, logger=daemon.LOG.name):
            handler(15, None)
    finally:
        REQUEST_ID.reset(token)
    [record] = [r for r in caplog.records if "stopping" in r.getMessage()]
    assert record.request_id == "-"
    assert stop.is_set() and server.stopped.wait(5)
