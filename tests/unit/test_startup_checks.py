"""Every config value is checked at start, before LIO, the store or the token
file is touched: a bad one is one line on stderr and exit status 2, and the
refused start leaves nothing on disk. Risky settings that are allowed log a
warning at start."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from oslo_config import cfg

from iscsiattach import conf as iconf
from iscsiattach.cmd import daemon

REAL_SERVE = daemon.serve               # the Start fixture replaces it
INSECURE = ("[api] listen = 0.0.0.0 without TLS would send the API token in clear text: "
            "set [api] tls_cert_file and tls_key_file, listen on loopback or a unix: "
            "socket, or set [api] allow_insecure_transport = true if this network is "
            "trusted")


@pytest.fixture(scope="module")
def pem(tmp_path_factory) -> dict[str, Path]:
    """A certificate, its key, an unrelated key and an encrypted key."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("pem")
    files = {n: d / f"{n}.pem" for n in ("cert", "key", "other_cert", "other_key",
                                         "encrypted_key")}

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    for cert, key in (("cert", "key"), ("other_cert", "other_key")):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=iscsiattach-test", "-keyout", str(files[key]), "-out", str(files[cert]))
    run("pkey", "-in", str(files["key"]), "-aes256", "-passout", "pass:secret-pass",
        "-out", str(files["encrypted_key"]))
    return files


class Start:
    """One daemon start with a config file in <tmp>/etc; state in <tmp>/state."""

    def __init__(self, tmp_path: Path, monkeypatch, capsys) -> None:
        self.tmp, self.capsys = tmp_path, capsys
        self.state = tmp_path / "state"
        (tmp_path / "etc").mkdir()
        self.served: list[cfg.ConfigOpts] = []
        # A start that passes the checks stops here: these tests never serve.
        monkeypatch.setattr(daemon, "serve", self.served.append)

    def __call__(self, text: str, state: str | None = None) -> tuple[int, list[str]]:
        path = self.tmp / "etc" / "iscsiattach.conf"
        path.write_text(f"[DEFAULT]\nstate_path = {state or self.state}\n{text}\n")
        rc = daemon.main(["--config-file", str(path)])
        return rc, self.capsys.readouterr().err.strip().splitlines()

    def refused(self, text: str, state: str | None = None) -> str:
        """The one stderr line of a start refused with status 2."""
        rc, err = self(text, state)
        assert (rc, len(err)) == (2, 1), err
        assert err[0].startswith("iscsiattachd: ")
        assert self.served == []
        # Nothing on disk: no state dir, no store, no token file.
        assert sorted(p.name for p in self.tmp.iterdir()) == ["etc"]
        assert [p.name for p in (self.tmp / "etc").iterdir()] == ["iscsiattach.conf"]
        return err[0][len("iscsiattachd: "):]


@pytest.fixture()
def start(tmp_path, monkeypatch, capsys) -> Start:
    for name in list(os.environ):
        if name.startswith("OS_"):              # oslo.config reads OS_<GROUP>__<NAME>
            monkeypatch.delenv(name)
    return Start(tmp_path, monkeypatch, capsys)


# -- values oslo.config would only have refused on first use -------------------

@pytest.mark.parametrize("text, reason", [
    ("[api]\nport = notaport",
     "[api] port = 'notaport' is not valid: invalid literal for int() with base 10: "
     "'notaport'"),
    ("[api]\nport = 70000",
     "[api] port = '70000' is not valid: Should be less than or equal to 65535"),
    ("[api]\nauth_strategy = keystone",
     "[api] auth_strategy = 'keystone' is not valid: Valid values are [token, noauth], "
     "but found 'keystone'"),
    ("[api]\nallow_insecure_transport = perhaps",
     "[api] allow_insecure_transport = 'perhaps' is not valid: Unexpected boolean value "
     "'perhaps'"),
    ("[reconciler]\ninterval = 0",
     "[reconciler] interval = '0' is not valid: Should be greater than or equal to 1"),
    ("[reconciler]\nrestore_workers = 65",
     "[reconciler] restore_workers = '65' is not valid: Should be less than or equal "
     "to 64"),
    ("[lio]\nfileio_write_back = maybe",
     "[lio] fileio_write_back = 'maybe' is not valid: Unexpected boolean value 'maybe'"),
    ("[lio]\nport = -1",
     "[lio] port = '-1' is not valid: Should be greater than or equal to 0"),
    ("[volumes]\nmax_size_gib = lots",
     "[volumes] max_size_gib = 'lots' is not valid: invalid literal for int() with "
     "base 10: 'lots'"),
    ("[volumes]\nbackend = zfs",
     "[volumes] backend = 'zfs' is not valid: Valid values are [file, lvm, block], but "
     "found 'zfs'"),
])
def test_typed_value_refused(start, text, reason):
    assert start.refused(text) == reason


def test_value_from_the_environment_named_as_given(start, monkeypatch):
    monkeypatch.setenv("OS_API__PORT", "eighty")
    assert start.refused("") == ("[api] port = 'eighty' is not valid: invalid literal "
                                 "for int() with base 10: 'eighty'")


def test_a_secret_value_is_never_shown(start, monkeypatch):
    secret = cfg.IntOpt("pin", secret=True, help="A secret number for this test only.")
    opts = iconf.list_opts()
    monkeypatch.setattr(iconf, "list_opts", lambda: [*opts, ("testing", [secret])])
    reason = start.refused("[testing]\npin = hunter2-pin")
    assert reason == "[testing] pin: the value given is not valid (not shown: secret)"


# -- what each consumer checks -----------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("[lio]\ntarget_prefix = iqn.2010-10.org.openstack",
     "[lio] target_prefix: invalid target prefix 'iqn.2010-10.org.openstack': it must "
     "end with ':', '.' or '-'"),
    ("[lio]\nportals = 10.0.0.1:99999",
     "[lio] portals: invalid portal port 99999: expected 1-65535"),
    ("[lio]\nportals = eth0:port",
     "[lio] portals: invalid portal 'eth0:port': not an address or an interface name"),
    ("[lio]\nportals = no-such-nic0",
     "[lio] portals: portal interface 'no-such-nic0' does not exist on this node"),
    ("[volumes]\nbackend = lvm",
     "[volumes] lvm_volume_group must be set when backend = lvm"),
    ("[volumes]\nbackend = lvm\nlvm_volume_group = -vg",
     "[volumes] backend = lvm: invalid volume group name '-vg': expected 1-127 of "
     "A-Z a-z 0-9 + _ . -, not starting with '-'"),
    ("[volumes]\nfile_directory = volumes",
     "[volumes] backend = file: invalid volume directory 'volumes': expected an "
     "absolute path"),
    ("[volumes]\nbackend = block\nblock_allowed_prefixes = dev/",
     "[volumes] backend = block: invalid block device prefix 'dev/': expected "
     "an absolute directory such as /dev/disk/by-id/"),
    ("[api]\nlisten = unix:",
     "[api] listen 'unix:' names no socket path: give unix:/absolute/path"),
    ("[api]\nlisten = unix:run/api.sock",
     "[api] listen unix:run/api.sock is a relative path: give an absolute one"),
    ("[api]\nlisten = storage-node.example",
     "[api] listen 'storage-node.example' is not an IP address or unix:/absolute/path"),
    ("[api]\nlisten = 0.0.0.0", INSECURE),
    ("[api]\nlisten = 0.0.0.0\nallow_insecure_transport = false", INSECURE),
    ("[api]\nlisten = 0.0.0.0\nauth_strategy = noauth",
     "[api] auth_strategy noauth needs a loopback address or a unix: socket to listen "
     "on, not '0.0.0.0'"),
    ("[api]\ntoken_file = api-token",
     "[api] token_file 'api-token' is a relative path: give an absolute one"),
])
def test_setting_refused(start, text, reason):
    assert start.refused(text) == reason


def test_relative_state_path_refused(start):
    assert start.refused("", state="state") == ("[DEFAULT] state_path 'state' is a "
                                                "relative path: give an absolute one")


def test_state_path_that_is_a_file_refused(start, tmp_path):
    (tmp_path / "etc" / "state").write_text("")
    rc, err = start("", state=str(tmp_path / "etc" / "state"))
    assert rc == 2 and err == [f"iscsiattachd: [DEFAULT] state_path {tmp_path}/etc/state "
                               "exists and is not a directory"]


def test_tls_settings_refused(start, pem):
    def tls(cert, key, listen="0.0.0.0"):
        lines = [f"listen = {listen}"]
        lines += [f"tls_cert_file = {cert}"] if cert else []
        lines += [f"tls_key_file = {key}"] if key else []
        return start.refused("[api]\n" + "\n".join(lines))

    together = "[api] tls_cert_file and tls_key_file go together: set both or neither"
    assert tls(pem["cert"], None) == together
    assert tls(None, pem["key"]) == together
    missing = pem["cert"].with_name("missing.pem")
    assert tls(missing, pem["key"]) == (f"[api] tls_cert_file {missing} cannot be read: "
                                        "No such file or directory")
    assert tls(pem["cert"], missing) == (f"[api] tls_key_file {missing} cannot be read: "
                                         "No such file or directory")
    assert tls(pem["cert"], pem["other_key"]) == (
        f"[api] tls_cert_file {pem['cert']} and tls_key_file {pem['other_key']} are not "
        "a PEM certificate and its private key (KEY_VALUES_MISMATCH)")
    assert tls(pem["key"], pem["key"]).startswith(
        f"[api] tls_cert_file {pem['key']} and tls_key_file {pem['key']} are not a PEM "
        "certificate and its private key (")
    assert tls(pem["cert"], pem["encrypted_key"]) == (
        f"[api] tls_key_file {pem['encrypted_key']} is encrypted: the daemon needs a key "
        "without a passphrase (0600)")
    assert tls(pem["cert"], pem["key"], listen="unix:/run/iscsiattach/api.sock") == (
        "[api] tls_cert_file is set but listen = unix:/run/iscsiattach/api.sock is a "
        "Unix socket, which is served without TLS: unset the tls_ options")


# -- allowed starts, and their warnings ---------------------------------------------

def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "iscsiattachd" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("text", ["", "[api]\nlisten = ::1",
                                  "[api]\nlisten = unix:/run/iscsiattach/api.sock",
                                  # the option only matters where it is needed
                                  "[api]\nallow_insecure_transport = true"])
def test_safe_settings_start_without_warnings(start, caplog, text):
    assert start(text) == (0, [])
    assert len(start.served) == 1 and _warnings(caplog) == []


def test_tls_on_a_public_address_starts_without_warnings(start, caplog, pem):
    text = f"[api]\nlisten = 0.0.0.0\ntls_cert_file = {pem['cert']}\n" \
           f"tls_key_file = {pem['key']}"
    assert start(text) == (0, [])
    assert len(start.served) == 1 and _warnings(caplog) == []


def test_insecure_transport_allowed_with_a_warning(start, caplog):
    text = "[api]\nlisten = 10.0.0.5\nport = 8777\nallow_insecure_transport = true"
    assert start(text) == (0, [])
    assert _warnings(caplog) == ["[api] allow_insecure_transport = true: the API token "
                                 "crosses the network to 10.0.0.5 port 8777 in clear text"]


@pytest.mark.parametrize("listen", ["127.0.0.1", "[::1]", "unix:/run/iscsiattach/api.sock"])
def test_noauth_starts_with_a_warning(start, caplog, listen):
    assert start(f"[api]\nauth_strategy = noauth\nlisten = {listen}") == (0, [])
    assert _warnings(caplog) == [f"[api] auth_strategy = noauth: any local user who can "
                                 f"reach {listen} can call the API, as any user and "
                                 "project, without a token"]


def test_validate_reads_every_registered_option(monkeypatch):
    config = daemon.load_config([])
    read: list[tuple[str | None, str]] = []
    original = iconf._read_option

    def spy(conf, group, opt):
        read.append((group, opt.dest))
        return original(conf, group, opt)
    monkeypatch.setattr(iconf, "_read_option", spy)
    assert iconf.validate(config) == []
    assert read == [(g, o.dest) for g, opts in iconf.list_opts() for o in opts]


# -- a token file that is not the daemon's own: refused, nothing made --------------

def test_token_file_through_a_symlink_refused_before_the_store(start, tmp_path,
                                                                monkeypatch):
    def touched(*_a, **_k):
        raise AssertionError("the store or LIO was touched")
    monkeypatch.setattr(daemon, "services_from_conf", touched)
    monkeypatch.setattr(daemon, "serve", REAL_SERVE)
    (tmp_path / "etc" / "real-token").write_text("t" * 40)
    os.chmod(tmp_path / "etc" / "real-token", 0o600)
    (tmp_path / "etc" / "api-token").symlink_to(tmp_path / "etc" / "real-token")
    rc, err = start(f"[api]\ntoken_file = {tmp_path}/etc/api-token")
    assert rc == 2 and err == [f"iscsiattachd: token file {tmp_path}/etc/api-token is a "
                               "symbolic link: the token file must be the file itself"]
    assert not start.state.exists()
