"""One real iscsiattachd process: its config file, start, readiness, stop.

The functional tests (tests/functional/daemon.py), the demo, the benchmarks
and the suites under tools/ each start the daemon through this class; a
``Config`` says what differs between them (port, target prefix, volume
backend, TLS, ...), the rest is the shipped sample's defaults.
"""
from __future__ import annotations

import http.client
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscsiattach import failpoints
from iscsiattach.cli.client import Client
from tests.support.wait import wait_for

DAEMON = Path(sys.executable).with_name("iscsiattachd")
TOP = Path(__file__).resolve().parents[2]
SAMPLE = TOP / "etc" / "iscsiattach" / "iscsiattach.conf.sample"
LOCAL = "127.0.0.1"
API_VERSION = "3.54"


class DaemonFailed(AssertionError):
    """The daemon died or never served. An AssertionError, so that pytest
    reports a failed test (not an error in the harness)."""


def file_backend(directory: Path) -> dict[str, str]:
    """The [volumes] section of the sparse-file backend."""
    return {"backend": "file", "file_directory": str(directory)}


def block_backend(*devices: str) -> dict[str, str]:
    """The [volumes] section of the block backend, allowed ``devices`` only."""
    return {"backend": "block", "block_allowed_devices": ",".join(devices)}


@dataclass
class Config:
    """The daemon's settings, written after the shipped sample (which holds
    every default). A None keeps the default; ``extra`` lines are appended
    as they are (a section given twice is merged by oslo.config)."""
    state: Path
    port: int
    volumes: dict[str, str] = field(default_factory=dict)
    listen: str | None = LOCAL
    prefix: str | None = None
    portals: str = LOCAL
    debug: bool | None = None
    tls: tuple[Path, Path] | None = None
    interval: int | None = None
    extra: str = ""

    def sections(self) -> dict[str, dict[str, Any]]:
        tls = {"tls_cert_file": self.tls[0], "tls_key_file": self.tls[1]} if self.tls else {}
        debug = None if self.debug is None else str(self.debug).lower()
        return {"DEFAULT": {"debug": debug, "state_path": self.state},
                "api": {"listen": self.listen, "port": self.port, **tls},
                "lio": {"target_prefix": self.prefix, "portals": self.portals},
                "volumes": self.volumes,
                "reconciler": {"interval": self.interval}}

    def text(self) -> str:
        lines = []
        for name, options in self.sections().items():
            given = [f"{key} = {value}" for key, value in options.items() if value is not None]
            lines += [f"[{name}]", *given] if given else []
        return "\n".join(lines) + "\n" + self.extra


class Daemon:
    """iscsiattachd started from ``config``, logging to ``log_path``
    (appended to; default: daemon.log beside the state directory).

    ``env``: extra environment for every start. ``forkserver``: start it
    through a tests.functional.forkserver.ForkServer (the same main(), a
    fresh process, without paying the imports again) instead of the script.
    ``nofile``: the soft RLIMIT_NOFILE of the daemon's process, set in the
    child before exec (as systemd's LimitNOFILE= would); not with
    ``forkserver``. ``command``: the argv that starts the daemon, instead of
    the iscsiattachd script (e.g. an earlier tree of the code).
    """

    def __init__(self, config: Config, *, env: dict[str, str] | None = None,
                 forkserver: Any = None, nofile: int | None = None,
                 command: list[str] | None = None, log_path: Path | None = None,
                 config_path: Path | None = None) -> None:
        assert not (nofile and forkserver), "nofile needs the script start"
        self.settings, self.state, self.tls = config, config.state, config.tls
        self.host, self.port = config.listen or LOCAL, config.port
        self.command = command or [str(DAEMON)]
        self.env, self.forkserver, self.nofile = dict(env or {}), forkserver, nofile
        self.proc: Any = None
        self.log: Any = None
        self.log_path = log_path or self.state.parent / "daemon.log"
        self.log_offset = 0
        self.config = config_path or self.state.parent / "iscsiattach.conf"
        self.config.write_text(config.text())

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/v3"

    @property
    def token(self) -> str:
        return (self.state / "api-token").read_text().strip()

    def start(self, fault: str | None = None, ready: bool = True, timeout: float = 600,
              interval: float = 0.2) -> float:
        """Start; unless ``ready`` is false, wait until it serves and return
        the seconds that took. ``fault`` arms fault points for this start
        only (ISCSIATTACH_FAULTS syntax)."""
        self.log = open(self.log_path, "a")
        self.log_offset = self.log.tell()
        env = dict(self.env)
        if fault:
            env[failpoints.ENV] = fault
        # The shipped sample first (all defaults), then this daemon's settings.
        argv = ["--config-file", str(SAMPLE), "--config-file", str(self.config)]
        t0 = time.perf_counter()
        if self.forkserver is not None:
            self.proc = self.forkserver.spawn(argv, env, self.log_path)
        else:
            self.proc = subprocess.Popen([*self.command, *argv], stdout=self.log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **env},
                                         preexec_fn=self._limits if self.nofile else None)
        if ready:
            self.wait_ready(timeout, interval)
        return time.perf_counter() - t0

    def _limits(self) -> None:
        """In the child, before exec: the daemon's own file-descriptor limit."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    def wait_ready(self, timeout: float = 600, interval: float = 0.2) -> None:
        """Wait until it serves (a cold, loaded TCG guest can take minutes to
        import). One that never does is killed: left running, it would hold
        the port and reconcile its prefix under the next user's feet."""
        try:
            if not wait_for(self._alive_and_serving, timeout, interval):
                raise DaemonFailed(f"the daemon did not become ready in {timeout:.0f} s")
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
            raise

    def _alive_and_serving(self) -> bool:
        if self.proc.poll() is not None:
            raise DaemonFailed(f"iscsiattachd exited with {self.proc.returncode}:\n"
                               + self.log_since_start())
        return self.serving()

    def serving(self) -> bool:
        """Whether it answers its versions document; over HTTPS with the
        certificate checked (the CLI's client has no CA option)."""
        if not self.tls:
            return Client(self.url, None, API_VERSION, timeout=2).serving()
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=2,
                                           context=self.client_context())
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this daemon's certificate only."""
        assert self.tls, "the daemon serves plain HTTP"
        return ssl.create_default_context(cafile=str(self.tls[0]))

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as systemd stops it; wait for the exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        if self.log:
            self.log.close()

    def restart(self, **start: Any) -> float:
        self.stop()
        return self.start(**start)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.proc.kill()
        self.proc.wait(60)
        self.log.close()

    def wait_killed(self, point: str | None = None, timeout: float = 120) -> None:
        """Wait for the process to end; assert SIGKILL, at ``point`` if given."""
        rc = self.proc.wait(timeout)
        self.log.close()
        assert rc == -signal.SIGKILL, f"exit {rc}: " + self.log_since_start()[-3000:]
        if point is not None:
            assert f"{failpoints.MARK} {point} " in self.log_since_start(), \
                f"not killed at {point}: " + self.log_since_start()[-3000:]

    def log_since_start(self) -> str:
        with open(self.log_path, errors="replace") as f:
            f.seek(self.log_offset)
            return f.read()


def make_tls_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC P-256, valid two days) and
    its key, made with the openssl CLI; (cert, key) paths, the key 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "api-cert.pem", folder / "api-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={LOCAL}", "-addext", f"subjectAltName=IP:{LOCAL}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
