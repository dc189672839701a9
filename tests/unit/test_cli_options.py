"""The CLI's global options: --os-volume-api-version (sent, and refused as
cinderclient refuses it when the command needs more), --version, --debug
and the quiet default of a failing attach, --complete for the shells."""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid

import pytest

from iscsiattach.cli import args as cli_args, main as cli_main
from iscsiattach.exception import BrickError
from tests.unit.cli_api import serving

TOKEN = "options-token-" + "x" * 30
A = "iqn.2004-10.com.example:host-a"


@pytest.fixture
def api(services, monkeypatch):
    """The API on loopback; the microversion header of every request."""
    with serving(services, monkeypatch, TOKEN, A) as versions:
        yield versions


def cli(capsys, *argv):
    capsys.readouterr()
    try:
        code = cli_main.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def new_volume(capsys) -> str:
    return json.loads(cli(capsys, "--format", "json", "volume-create", "1")[1])["id"]


def reserve(capsys, vid) -> str:
    return json.loads(cli(capsys, "--format", "json", "attachment-create", vid,
                          str(uuid.uuid4()), "--connect", "True", "--initiator", A)[1])["id"]


def test_the_microversion_asked_for_is_sent(api, capsys):
    vid = new_volume(capsys)
    assert set(api) == {"volume 3.54"}                      # the default: our maximum
    for given, sent in (("3.27", "volume 3.27"), ("3", "volume 3.0"),
                        ("3.latest", "volume latest")):
        api.clear()
        code, out, err = cli(capsys, "--os-volume-api-version", given, "attachment-list"
                             if given != "3" else "volume-list")
        assert (code, err) == (0, "") and api == [sent], (given, api)
    api.clear()
    att = reserve(capsys, vid)
    api.clear()
    assert cli(capsys, "--os-volume-api-version", "3.44", "attachment-complete", att)[0] == 0
    assert api == ["volume 3.44"]


@pytest.mark.parametrize("argv,needs", [
    (["--os-volume-api-version", "3.27", "attachment-complete", "A"], "3.44"),
    (["--os-volume-api-version", "3.0", "attachment-list"], "3.27"),
    (["--os-volume-api-version", "3.26", "attachment-create", "V", "I"], "3.27"),
    (["--os-volume-api-version", "3.44", "attachment-create", "V", "I", "--mode", "ro"],
     "'--mode' argument is only allowed since microversion 3.54"),
    (["--os-volume-api-version", "3.53", "attach", "V", "--mode", "rw"], "3.54"),
    (["--os-volume-api-version", "3.27", "attach", "V"], "3.44"),
])
def test_a_command_that_needs_a_later_microversion_is_refused(api, capsys, argv, needs):
    vid = new_volume(capsys)
    api.clear()
    code, out, err = cli(capsys, *[vid if a == "V" else a for a in argv])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("iscsiattach: error: ") and needs in err and "3." in err
    assert api == []                                        # nothing was sent


@pytest.mark.parametrize("value", ["3.x", "2", "2.0", "4.1", "", "latest", "3.-1"])
def test_a_malformed_microversion_is_one_line(capsys, value):
    code, out, err = cli(capsys, "--os-volume-api-version", value, "volume-list")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--os-volume-api-version" in err


def test_a_microversion_the_daemon_does_not_serve_is_its_answer(api, capsys):
    code, out, err = cli(capsys, "--os-volume-api-version", "3.99", "volume-list")
    assert code == 1 and out == "" and "maximum is 3.54" in err and err.count("\n") == 1


def test_mode_ro_at_3_54_and_rw_without_mode_below(api, capsys):
    vid = new_volume(capsys)
    code, out, _ = cli(capsys, "--os-volume-api-version", "3.54", "--format", "json",
                       "attachment-create", vid, str(uuid.uuid4()), "--connect", "True",
                       "--mode", "ro")
    assert code == 0 and json.loads(out)["connection_info"]["access_mode"] == "ro"


def test_version(capsys):
    code, out, err = cli(capsys, "--version")
    assert code == 0 and out == f"iscsiattach {cli_args.package_version()}\n"
    assert out.split()[1][0].isdigit()


# -- quiet by default ---------------------------------------------------------------
@pytest.fixture
def failing_brick(monkeypatch, tmp_path):
    """os-brick as the CLI sees it, logging as the real one does on a failed
    login (a few dozen lines from os_brick and oslo loggers), then failing."""
    from iscsiattach.host import brick
    monkeypatch.setenv("ISCSIATTACH_HOST_STATE", str(tmp_path / "host"))
    monkeypatch.setattr(brick, "setup", lambda lock_path: None)
    monkeypatch.setattr(brick, "connector_properties", lambda my_ip, multipath: {
        "initiator": A, "ip": "127.0.0.1", "host": "h", "multipath": multipath,
        "platform": "x86_64", "os_type": "linux2"})

    def connect(info, multipath):
        lib = logging.getLogger("os_brick.initiator.connectors.iscsi")
        for n in range(10):
            lib.debug("iscsiadm ('-m', 'node', '-T', %s): try %d", info["target_iqn"], n)
            lib.warning("Failed to connect to iSCSI portal %s.", info["target_portal"])
            logging.getLogger("oslo_concurrency.processutils").warning("exit code 21")
        lib.error("Could not login to any iSCSI portal.")
        raise BrickError("os-brick could not connect: Could not login to any iSCSI portal")
    monkeypatch.setattr(brick, "connect", connect)
    monkeypatch.setattr(brick, "disconnect", lambda *a, **k: None)


@contextlib.contextmanager
def fresh_logging():
    """As in a fresh process: no handler on the root logger. pytest puts its
    own there for each test's call, which would hide what Python's
    last-resort handler prints (every library's warnings)."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_failed_attach_prints_its_progress_and_one_error(api, capsys, failing_brick):
    vid = new_volume(capsys)
    with fresh_logging():
        code, out, err = cli(capsys, "attach", vid)
    lines = err.splitlines()
    assert code == 1 and out == ""
    assert [ln[:4] for ln in lines[:-1]] == ["... "] * 3, lines
    assert lines[-1] == ("iscsiattach: error: connect failed: os-brick could not connect: "
                         "Could not login to any iSCSI portal")
    # Rolled back: the volume is free again.
    assert json.loads(cli(capsys, "--format", "json", "volume-show", vid)[1])["status"] \
        == "available"


def test_debug_shows_the_libraries_log(api, capsys, failing_brick):
    vid = new_volume(capsys)
    with fresh_logging():
        code, out, err = cli(capsys, "attach", vid, "--debug")
    assert code == 1
    assert err.count("WARNING os_brick.initiator.connectors.iscsi: Failed to connect") == 10
    assert "DEBUG os_brick" in err and "WARNING oslo_concurrency.processutils" in err
    assert err.splitlines()[-1].startswith("iscsiattach: error: connect failed")


def test_our_own_warnings_still_show_one_line_each(capsys):
    from iscsiattach.cli import logs
    with fresh_logging():
        logs.setup(debug=False)
        logging.getLogger("iscsiattach.host.attach").error("rollback: disconnect failed:\nx")
        logging.getLogger("os_brick").error("library noise")
        logging.getLogger("iscsiattach.host.attach").info("not at info")
    assert capsys.readouterr().err == ("iscsiattach: warning: rollback: disconnect failed:"
                                       "\\nx\n")


# -- --complete ---------------------------------------------------------------------
def test_complete_lists_ids_from_the_api(api, capsys):
    vids = sorted(new_volume(capsys) for _ in range(2))
    att = reserve(capsys, vids[0])
    code, out, err = cli(capsys, "--complete", "volumes")
    assert (code, err) == (0, "") and sorted(out.split()) == vids
    code, out, err = cli(capsys, "--complete", "attachments")
    assert (code, err) == (0, "") and out.split() == [att]


@pytest.mark.parametrize("argv", [
    ["--url", "http://127.0.0.1:9/v3"], ["--url", "garbage"],
    ["--token-file", "/nonexistent/token"], ["--url", "https://127.0.0.1:9/v3",
                                             "--cacert", "/nonexistent"],
])
def test_complete_is_silent_and_quick_on_any_error(api, capsys, monkeypatch, argv):
    if "--token-file" in argv:
        monkeypatch.delenv("ISCSIATTACH_TOKEN")
    start = time.monotonic()
    code, out, err = cli(capsys, *argv, "--complete", "volumes")
    assert (code, out, err) == (0, "", "") and time.monotonic() - start < 3


def test_complete_is_silent_when_the_token_is_refused(api, capsys, monkeypatch):
    new_volume(capsys)
    monkeypatch.setenv("ISCSIATTACH_TOKEN", "wrong")
    assert cli(capsys, "--complete", "volumes") == (0, "", "")
