"""A real iscsiattachd process for functional tests, and a tiny HTTP client."""
from __future__ import annotations

import http.client
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

from iscsiattach import failpoints
from iscsiattach.cli.client import CliError, Client
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
    ``tls``: (certificate, key) PEM files (see make_tls_cert): the API serves
    HTTPS and ``url`` says https. ``debug``: the config's debug flag (false
    logs as a production daemon does). ``nofile``: the soft RLIMIT_NOFILE of
    the daemon's process, set in the child before exec (as systemd's
    LimitNOFILE= would); not with ``forkserver``. ``command``: the argv that
    starts the daemon, instead of the iscsiattachd script (tools/dos-suite's
    server comparison starts earlier code this way).
    """

    def __init__(self, state: Path, volumes: Path, extra: str = "",
                 env: dict[str, str] | None = None, forkserver=None,
                 tls: tuple[Path, Path] | None = None, debug: bool = True,
                 nofile: int | None = None, command: list[str] | None = None) -> None:
        assert not (nofile and forkserver), "nofile needs the script start"
        self.command = command or [str(DAEMON)]
        self.state, self.proc = state, None
        self.env, self.forkserver = dict(env or {}), forkserver
        self.tls, self.nofile = tls, nofile
        self.log_path = state.parent / "daemon.log"
        self.log_offset = 0
        self.config = state.parent / "iscsiattach.conf"
        tls_conf = f"tls_cert_file = {tls[0]}\ntls_key_file = {tls[1]}\n" if tls else ""
        self.config.write_text(f"""[DEFAULT]
debug = {str(debug).lower()}
state_path = {state}
[api]
listen = 127.0.0.1
port = {PORT}
{tls_conf}[lio]
target_prefix = {PREFIX}
portals = 127.0.0.1
[volumes]
backend = file
file_directory = {volumes}
[reconciler]
interval = 3600
""" + extra)

    def start(self, fault: str | None = None, ready: bool = True, timeout: float = 600) -> None:
        """Start; wait until it serves unless ``ready`` is false. ``fault``
        arms fault points for this start only (ISCSIATTACH_FAULTS syntax)."""
        self.log = open(self.log_path, "a")
        self.log_offset = self.log.tell()
        env = dict(self.env)
        if fault:
            env[failpoints.ENV] = fault
        # The shipped sample first (all defaults), then this test's settings.
        argv = ["--config-file", str(SAMPLE), "--config-file", str(self.config)]
        if self.forkserver is not None:
            self.proc = self.forkserver.spawn(argv, env, self.log_path)
        else:
            self.proc = subprocess.Popen([*self.command, *argv], stdout=self.log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **env},
                                         preexec_fn=self._limits if self.nofile else None)
        if ready:
            self.wait_ready(timeout)

    def _limits(self) -> None:
        """In the child, before exec: the daemon's own file-descriptor limit."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{PORT}/v3"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this daemon's certificate only."""
        return ssl.create_default_context(cafile=str(self.tls[0]))

    def wait_ready(self, timeout: float = 600) -> None:
        """Wait until it serves (a cold, loaded TCG guest can take minutes to
        import). One that never does is killed: left running, it would hold
        the port and reconcile our prefix under the next tests' feet."""
        try:
            self._wait_serving(timeout)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
            raise

    def _wait_serving(self, timeout: float) -> None:
        serving = self._serving_tls if self.tls else Client(URL, None, "3.54", timeout=2).serving
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log_since_start()
            if serving():
                return
            time.sleep(0.2)
        raise AssertionError("the daemon did not become ready")

    def _serving_tls(self) -> bool:
        """The versions document over HTTPS, the certificate checked (the
        CLI's client has no CA option)."""
        conn = http.client.HTTPSConnection("127.0.0.1", PORT, timeout=2,
                                           context=self.client_context())
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

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
            assert f"{failpoints.MARK} {point} " in self.log_since_start(), \
                f"not killed at {point}: " + self.log_since_start()[-3000:]

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.proc.kill()
        self.proc.wait(60)
        self.log.close()

    @property
    def token(self) -> str:
        return (self.state / "api-token").read_text().strip()


def call(method, path, body=None, token=None, version="3.54", url=URL):
    """(status, JSON body) of one API request. A daemon that is down raises
    ConnectionError (an OSError), which load clients catch to retry."""
    try:
        return Client(url, token, version, timeout=120).call(method, path, body)
    except CliError as exc:
        raise ConnectionError(str(exc)) from None




def make_tls_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC P-256, valid two days) and
    its key, made with the openssl CLI; (cert, key) paths, the key 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "api-cert.pem", folder / "api-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
