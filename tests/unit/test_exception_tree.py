"""One exception tree, translated once per edge: every exception class of the
package derives from IscsiAttachError, the one table (exception.EDGES) lists
each of them, and the API, the CLI and the daemon all take their codes from it."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import socket

import pytest

import iscsiattach
from iscsiattach import exception as exc
from iscsiattach.api.faults import FAULT_NAMES, to_fault
from iscsiattach.api.server import make_server
from iscsiattach.cli import host as cli_host, main as cli_main
from iscsiattach.cli.client import Client
from iscsiattach.cmd import daemon


def package_modules() -> list:
    names = [m.name for m in pkgutil.walk_packages(iscsiattach.__path__, "iscsiattach.")]
    return [importlib.import_module(name) for name in names]


def exception_classes_defined_in_the_package() -> list[type]:
    found = []
    for module in package_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def all_subclasses(cls: type) -> set[type]:
    direct = set(cls.__subclasses__())
    return direct.union(*(all_subclasses(c) for c in direct))


def test_every_exception_class_of_the_package_derives_from_the_root():
    classes = exception_classes_defined_in_the_package()
    assert exc.IscsiAttachError in classes and exc.ListenFailed in classes
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes
               if not issubclass(c, exc.IscsiAttachError)]
    assert outside == []


def test_every_exception_class_lives_in_exception_py():
    # None of them had to stay near its raiser to avoid an import cycle.
    elsewhere = [f"{c.__module__}.{c.__qualname__}"
                 for c in exception_classes_defined_in_the_package()
                 if c.__module__ != "iscsiattach.exception"]
    assert elsewhere == []


def test_the_table_lists_every_class_of_the_tree_and_nothing_else():
    package_modules()                   # every subclass defined anywhere is loaded
    tree = {exc.IscsiAttachError} | all_subclasses(exc.IscsiAttachError)
    ours = {c for c in tree if c.__module__.startswith("iscsiattach.")}
    assert ours - set(exc.EDGES) == set(), "classes without codes in exception.EDGES"
    assert set(exc.EDGES) - ours == set()


def test_the_exit_codes_are_those_of_today():
    # 2: the command line or configuration is wrong (as argparse); 1: anything else.
    usage = {c for c, edge in exc.EDGES.items() if edge.exit_code == 2}
    assert usage == {exc.InvalidInput, exc.NotABlockDevice}
    assert {edge.exit_code for c, edge in exc.EDGES.items() if c not in usage} == {1}


def test_the_client_side_status_mapping_is_the_table_read_backwards():
    for status, cls in exc.ERROR_OF_STATUS.items():
        assert exc.EDGES[cls].http_status == status
        assert type(exc.error_for_status(status, "m")) is cls
    for status in (401, 403, 405, 413, 500, 503):
        assert type(exc.error_for_status(status, "m")) is exc.DaemonRefused


def make(cls: type[exc.IscsiAttachError], message: str) -> exc.IscsiAttachError:
    return cls(418, message) if cls is exc.HttpError else cls(message)


@pytest.mark.parametrize("cls", list(exc.EDGES))
def test_to_fault_answers_each_class_with_the_table_status(cls):
    status, body = to_fault(make(cls, "what went wrong"))
    assert status == (418 if cls is exc.HttpError else exc.EDGES[cls].http_status)
    assert body == {FAULT_NAMES.get(status, "computeFault"):
                    {"code": status, "message": "what went wrong"}}


def test_to_fault_answers_other_exceptions_with_a_generic_500():
    status, body = to_fault(KeyError("a secret"))
    assert status == 500 and "a secret" not in str(body)


# -- the CLI: the table decides the exit status of a refused request ----------

@pytest.fixture
def answer(monkeypatch):
    """Every request of the CLI gets the answer set in ``answer.status``."""
    monkeypatch.setenv("ISCSIATTACH_TOKEN", "t" * 32)

    class Answer:
        status = 200

        def call(self, client, method, path, body=None, root=False):
            return self.status, {"someFault": {"code": self.status, "message": "refused"}}
    ans = Answer()
    monkeypatch.setattr(Client, "call", lambda client, *a, **k: ans.call(client, *a, **k))
    return ans


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("status,code", [(400, 2), (401, 1), (404, 1), (406, 1), (409, 1),
                                         (413, 1), (500, 1), (503, 1)])
def test_cli_exit_status_of_an_error_answer(answer, capsys, status, code):
    answer.status = status
    rc, out, err = run_cli(capsys, "volume-list")
    assert rc == code == exc.exit_code(exc.error_for_status(status, ""))
    assert out == "" and err.count("\n") == 1 and err.startswith(cli_main.ERROR)
    # A 401 says which token was refused instead of the daemon's message.
    assert err.endswith(f"{'API token from ISCSIATTACH_TOKEN' if status == 401 else 'refused'} "
                        f"(HTTP {status})\n")


def test_cli_bad_input_exits_2_with_one_line(answer, capsys):
    rc, out, err = run_cli(capsys, "volume-show", "..")
    assert rc == 2 and out == "" and err == f"{cli_main.ERROR}invalid id '..'\n"
    rc, out, err = run_cli(capsys, "--url", "ftp://x/v3", "volume-list")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "invalid daemon URL" in err


def test_host_side_gets_the_same_classes(answer):
    # detach relies on a 404 being NotFound (an attachment already deleted).
    api = cli_host.ApiAdapter(Client("http://127.0.0.1:9/v3", None, "3.54"))
    for status, cls in [(404, exc.NotFound), (409, exc.Conflict), (400, exc.InvalidInput),
                        (500, exc.DaemonRefused)]:
        answer.status = status
        with pytest.raises(cls, match=f"refused \\(HTTP {status}\\)"):
            api.attachment_delete("a")


# -- the daemon: "cannot listen" only when binding or listening fails ---------------

def test_a_port_in_use_is_listen_failed():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(exc.ListenFailed,
                           match=f"^cannot listen on 127.0.0.1 port {port}: Address already"):
            make_server("127.0.0.1", port, app=None)
    finally:
        taken.close()


@pytest.fixture
def start(tmp_path, monkeypatch, capsys):
    """daemon.main with a valid config, its serve() raising the given error."""
    conf = tmp_path / "c.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}/s\n")

    def run(error: BaseException) -> tuple[int, list[str]]:
        def serve(_config):
            raise error
        monkeypatch.setattr(daemon, "serve", serve)
        rc = daemon.main(["--config-file", str(conf)])
        return rc, capsys.readouterr().err.strip().splitlines()
    return run


def test_daemon_listen_failed_exits_1(start):
    rc, err = start(exc.ListenFailed("cannot listen on ::1 port 8776: Address already in use"))
    assert rc == 1 and err == ["iscsiattachd: cannot listen on ::1 port 8776: Address "
                               "already in use"]


def test_daemon_other_os_errors_say_what_failed(start):
    rc, err = start(PermissionError(13, "Permission denied", "/var/lib/x/locks"))
    assert rc == 1 and err == ["iscsiattachd: /var/lib/x/locks: Permission denied"]
    rc, err = start(OSError(28, "No space left on device"))
    assert rc == 1 and err == ["iscsiattachd: No space left on device (OSError)"]


def test_daemon_exit_status_comes_from_the_table(start):
    assert start(exc.InvalidInput("token file x is a directory"))[0] == 2
    assert start(exc.TargetUnavailable("no LIO: configfs is not mounted")) == (
        1, ["iscsiattachd: no LIO: configfs is not mounted"])
