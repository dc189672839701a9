"""A real iscsiattachd process for functional tests, and a tiny HTTP client."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from iscsiattach import faults
from tests.functional.conftest import PREFIX

PORT = 18776
URL = f"http://127.0.0.1:{PORT}/v3"
DAEMON = Path(sys.executable).with_name("iscsiattachd")
SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "iscsiattach" / "iscsiattach.conf.sample"


class Daemon:
    """iscsiattachd on 127.0.0.1:PORT with the file backend; extra config lines
    (e.g. "[api]\\nport = ...") are appended to its config file.

    ``env``: extra environment for every start. ``forkserver``: start it
    through a tests.functional.forkserver.ForkServer (the same main(), a
    fresh process, without paying the imports again) instead of the script.
    """

    def __init__(self, state: Path, volumes: Path, extra: str = "",
                 env: dict[str, str] | None = None, forkserver=None) -> None:
        self.state, self.proc = state, None
        self.env, self.forkserver = dict(env or {}), forkserver
        self.log_path = state.parent / "daemon.log"
        self.log_offset = 0
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

    def start(self, fault: str | None = None, ready: bool = True, timeout: float = 60) -> None:
        """Start; wait until it serves unless ``ready`` is false. ``fault``
        arms fault points for this start only (ISCSIATTACH_FAULTS syntax)."""
        self.log = open(self.log_path, "a")
        self.log_offset = self.log.tell()
        env = dict(self.env)
        if fault:
            env[faults.ENV] = fault
        # The shipped sample first (all defaults), then this test's settings.
        argv = ["--config-file", str(SAMPLE), "--config-file", str(self.config)]
        if self.forkserver is not None:
            self.proc = self.forkserver.spawn(argv, env, self.log_path)
        else:
            self.proc = subprocess.Popen([str(DAEMON), *argv], stdout=self.log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **env})
        if ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log_since_start()
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

    def log_since_start(self) -> str:
        with open(self.log_path, errors="replace") as f:
            f.seek(self.log_offset)
            return f.read()

    def wait_killed(self, point: str | None = None, timeout: float = 120) -> None:
        """Wait for the process to end; assert SIGKILL, at ``point`` if given."""
        rc = self.proc.wait(timeout)
        self.log.close()
        assert rc == -signal.SIGKILL, f"exit {rc}: " + self.log_since_start()[-3000:]
        if point is not None:
            assert f"{faults.MARK} {point} " in self.log_since_start(), \
                f"not killed at {point}: " + self.log_since_start()[-3000:]

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.proc.kill()
        self.proc.wait(60)
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


