"""A real iscsiattachd process for functional tests, and a tiny HTTP client."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.functional.conftest import PREFIX

PORT = 18776
URL = f"http://127.0.0.1:{PORT}/v3"
DAEMON = Path(sys.executable).with_name("iscsiattachd")
SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "iscsiattach" / "iscsiattach.conf.sample"


class Daemon:
    """iscsiattachd on 127.0.0.1:PORT with the file backend; extra config lines
    (e.g. "[api]\\nport = ...") are appended to its config file."""

    def __init__(self, state: Path, volumes: Path, extra: str = "") -> None:
        self.state, self.proc = state, None
        self.config = state.parent / "iscsiattach.conf"
        self.config.write_text(f"""[DEFAULT]
debug = true
state_path = {state}
[api]
listen = 127.0.0.1
port = {PORT}
[lio]
target_prefix = {PREFIX}
portals = 127.0.0.1
[volumes]
backend = file
file_directory = {volumes}
[reconciler]
interval = 3600
""" + extra)

    def start(self) -> None:
        self.log = open(self.state.parent / "daemon.log", "a")
        # The shipped sample first (all defaults), then this test's settings.
        self.proc = subprocess.Popen([str(DAEMON), "--config-file", str(SAMPLE),
                                      "--config-file", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert self.proc.poll() is None, (self.state.parent / "daemon.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 300:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the daemon did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.log.close()

    @property
    def token(self) -> str:
        return (self.state / "api-token").read_text().strip()


def call(method, path, body=None, token=None, version="3.54"):
    req = urllib.request.Request(URL + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("OpenStack-API-Version", f"volume {version}")
    if token is not None:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if data else None
    except urllib.error.HTTPError as exc:
        data = exc.read()
        return exc.code, json.loads(data) if data else None


