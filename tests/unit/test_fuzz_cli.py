"""Hostile argv against the iscsiattach CLI (issue 7), over real HTTP to the
in-process app (a threaded server on loopback) on the seeded fuzz world.

Every run ends in exit 0, or a non-zero exit with exactly one line on
stderr that starts "iscsiattach: error: " and nothing on stdout; argparse's
own usage errors follow the same rule (exit 2). Never a traceback, never a
5xx from the daemon, never a CHAP secret unless --show-secrets, and a
failed single-object command changes nothing. Output goes through strict
UTF-8 streams, as a real terminal's stdout would.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import threading

import pytest
from hypothesis import given, strategies as st

from iscsiattach.api.server import make_server
from iscsiattach.cli import host, main as cli_main, output
from tests.unit import fuzz_strategies as fz
from tests.unit.fuzz_world import (
    CASES,
    INITIATORS,
    TOKEN,
    Template,
    invariants,
    secrets_of,
    snapshot,
)

ERROR = "iscsiattach: error: "


class Dispatcher:
    """The server's app: whichever world is current; remembers every status."""

    def __init__(self) -> None:
        self.app, self.statuses = None, []

    async def __call__(self, scope, receive, send):
        async def recording(message):
            if message["type"] == "http.response.start":
                self.statuses.append(message["status"])
            await send(message)
        await self.app(scope, receive, recording)


@pytest.fixture(scope="module")
def env():
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None     # see test_fuzz_api
    with tempfile.TemporaryDirectory(prefix="iscsiattach-fuzz-cli-", dir=base) as tmp, \
            pytest.MonkeyPatch.context() as mp:
        template = Template(os.path.join(tmp, "state"))
        dispatcher = Dispatcher()
        srv = make_server("127.0.0.1", 0, dispatcher)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        mp.setenv("ISCSIATTACH_URL", f"http://127.0.0.1:{srv.server_port}/v3")
        mp.setenv("ISCSIATTACH_TOKEN", TOKEN)
        mp.delenv("ISCSIATTACH_TOKEN_FILE", raising=False)
        # Hermetic: no reading of this machine's initiator name, no os-brick.
        mp.setattr(cli_main, "local_initiator", lambda: INITIATORS[0])
        mp.setattr(host, "run", lambda args, client: "")
        files = _token_files(tmp)
        yield template, dispatcher, files
        srv.shutdown()
        srv.server_close()


def _token_files(tmp: str) -> dict[str, str]:
    contents = {"binary": b"\xff\xfe\x00junk", "two-lines": b"tok\nen", "empty": b"",
                "spaces": b"a token with spaces", "latin": "é".encode() * 20,
                "good": TOKEN.encode()}
    out = {"missing": os.path.join(tmp, "nope"), "directory": tmp, "nul": "x\x00y"}
    for name, data in contents.items():
        path = os.path.join(tmp, f"token-{name}")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        out[name] = path
    return out


# -- argv ---------------------------------------------------------------------------
# Real argv has no NUL; undecodable bytes arrive as surrogate escapes.
word = st.one_of(st.text(st.characters(blacklist_characters="\x00",
                                       blacklist_categories=("Cs",)), max_size=20),
                 st.sampled_from([t for t in fz.TRAVERSAL if "\x00" not in t]),
                 st.sampled_from(["\udcff", "a\udce9b", "-", "--", "-1", "0", "True",
                                  "--help", "-h", "é", "a b", "a?b=c", "a#b", "%2e%2e",
                                  "x" * 300]))
# Mostly well-formed commands on things that exist, so that most runs reach
# the daemon; coin flips (fz.mostly) bring in the hostile parts.
ident = fz.mostly(st.one_of(fz.volume_ref, fz.attachment_ref),
                  st.one_of(fz.refs("vol", 7, ("upper",)), st.uuids().map(str), word))
vol_id = fz.mostly(fz.volume_ref, ident, 1)
att_id = fz.mostly(fz.attachment_ref, ident, 1)
BAD_URLS = ["garbage", "http://[::1", "http://127.0.0.1:notaport/v3", "unix:",
            "unix:/nonexistent/api.sock", "http://127.0.0.1:9/v3", "http://127.0.0.1:9/v3 x",
            "http://127.0.0.1:9/v3\n", "://", "http://", "https://127.0.0.1:9/v3"]
iqn_arg = fz.mostly(st.sampled_from(fz.GOOD_IQNS), st.one_of(st.sampled_from(fz.BAD_IQNS),
                                                             word))
connector_opts = st.tuples(iqn_arg, st.lists(st.one_of(
    st.tuples(st.just("--ip"), fz.mostly(st.ip_addresses().map(str), word)),
    st.tuples(st.just("--host"), word), st.tuples(st.just("--mountpoint"), word),
    st.tuples(st.just("--multipath"), st.sampled_from(["True", "false", "maybe"])),
    st.tuples(st.just("--platform"), word), st.tuples(st.just("--ostype"), word)),
    max_size=2)).map(lambda t: ["--initiator", t[0]] + [x for p in t[1] for x in p])


def flat(*parts) -> st.SearchStrategy:
    return st.tuples(*parts).map(lambda t: [x for p in t for x in
                                            (p if isinstance(p, list) else [p])])


size_arg = fz.mostly(st.integers(1, 5).map(str), st.one_of(
    st.integers(-2, 102).map(str),
    st.sampled_from(["0", "-1", "9" * 30, "1.5", "0x10", "١", "", " 1"]), word))
well_formed = st.one_of(
    flat(st.just("attachment-create"), vol_id,
         fz.mostly(fz.instance_ref, st.one_of(st.uuids().map(str), word)),
         st.sampled_from([[], ["--connect", "True"], ["--connect", "False"]]),
         fz.mostly(st.just([]), st.sampled_from([["--mode", "rw"], ["--mode", "ro"],
                                                 ["--mode", "x"]]), 1),
         connector_opts),
    flat(st.just("attachment-update"), att_id, connector_opts),
    flat(st.sampled_from(["attachment-complete", "attachment-delete"]),
         st.lists(att_id, min_size=1, max_size=3)),
    flat(st.just("attachment-show"), att_id),
    flat(st.just("attachment-list"), fz.mostly(st.just([]), st.tuples(
        st.sampled_from(["--volume-id", "--status"]), st.one_of(vol_id, word)).map(list), 1)),
    flat(st.just("volume-create"), size_arg,
         st.lists(st.one_of(st.tuples(st.just("--name"), word).map(list),
                            st.just(["--multiattach"]),
                            st.tuples(st.just("--source"), word).map(list)),
                  max_size=2).map(lambda xs: [x for p in xs for x in p])),
    flat(st.sampled_from(["volume-show", "volume-delete"]), vol_id),
    flat(st.just("volume-extend"), vol_id, size_arg),
    st.sampled_from([["volume-list"], ["status"]]))
commands = fz.mostly(well_formed, st.one_of(
    st.sampled_from([["attach", "x"], ["detach", "x"], [], ["--help"], ["nonsense"],
                     ["volume-list", "extra"], ["attachment-complete"],
                     ["attachment-create", "x"]]),
    st.lists(word, max_size=4)), 3)
hostile_global = st.one_of(
    st.tuples(st.just("--format"), word).map(list),
    st.tuples(st.just("--os-volume-api-version"), st.one_of(
        st.sampled_from(["3.27", "3.44", "3.54", "3", "3.0", "3.latest", "3.99", "2.0",
                         "4", "3.x", "latest", ""]), word)).map(list),
    st.tuples(st.just("--url"), st.sampled_from(BAD_URLS)).map(list),
    st.tuples(st.just("--token-file"), st.sampled_from(
        ["missing", "directory", "nul", "binary", "two-lines", "empty", "spaces", "latin",
         "good"])).map(lambda t: [t[0], "@" + t[1]]))
global_opts = st.tuples(
    st.sampled_from([[], ["--format", "json"], ["--show-secrets"],
                     ["--format", "json", "--show-secrets"]]),
    fz.mostly(st.just([]), hostile_global, 3)).map(lambda t: t[0] + t[1])
# Output options may come after the command too.
trailing = fz.mostly(st.just([]), st.sampled_from([["--format", "json"], ["--show-secrets"],
                                                  ["--format", "table"], ["--format", "x"]]), 2)
argv = flat(global_opts, commands, trailing)


# -- running the CLI ------------------------------------------------------------------
def run(argv_: list[str]) -> tuple[int, str, str]:
    """main(argv) with strict UTF-8 stdout (as a terminal) and stderr with
    backslashreplace (as Python's own); a traceback fails the case."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        try:
            code = cli_main.main(argv_)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout, sys.stderr = saved
    out.flush()
    err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


def resolve_argv(raw: list, refs: dict[str, str], files: dict[str, str]) -> list[str]:
    out = []
    for a in raw:
        if isinstance(a, fz.Ref):
            a = a.resolve(refs)
        elif a.startswith("@") and a[1:] in files:
            a = files[a[1:]]
        out.append(a)
    return out


def _several_objects(args: list[str]) -> bool:
    """complete/delete of several attachments: the first may succeed and a
    later one fail, so a failure does not mean nothing changed."""
    for i, a in enumerate(args):
        if a in ("attachment-complete", "attachment-delete"):
            return len(args) - i > 2
    return False


def check_run(env, raw: list) -> None:
    template, dispatcher, files = env
    world = template.restore()
    dispatcher.app, dispatcher.statuses = world.app, []
    args = resolve_argv(raw, world.refs, files)
    before, secrets = snapshot(world), secrets_of(world)
    CASES["cli runs"] += 1
    # A token file is read only when the environment has no token.
    saved = os.environ.pop("ISCSIATTACH_TOKEN") if "--token-file" in args else None
    try:
        code, out, err = run(args)
    finally:
        if saved is not None:
            os.environ["ISCSIATTACH_TOKEN"] = saved
    assert not [s for s in dispatcher.statuses if s >= 500], dispatcher.statuses
    CASES[f"cli runs exit {code}"] += 1
    assert "Traceback" not in err
    if code == 0:
        assert err == "" or "--help" in args or "-h" in args, err
    else:
        assert out == "", out
        assert err.startswith(ERROR) and err.endswith("\n") and err.count("\n") == 1, err
        if not _several_objects(args):
            assert snapshot(world) == before, f"exit {code} but state changed: {err}"
    if "--show-secrets" not in args:
        seen = secrets | secrets_of(world)
        assert not [s for s in seen if s in out or s in err], "a CHAP secret printed"
    if code == 0 and out.startswith(("{", "[")):
        assert not fake_secrets(json.loads(out)), "JSON with a masked secret for a value"
    assert invariants(world) == []


def fake_secrets(value) -> list:
    """Every secret field in JSON output whose value is the table's mask."""
    found = []
    if isinstance(value, list):
        for item in value:
            found += fake_secrets(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in output.SECRET_KEYS and item == output.MASK:
                found.append(key)
            found += fake_secrets(item)
    return found


@fz.fuzz_settings(500)
@given(raw=argv)
def test_hostile_argv(env, raw):
    check_run(env, raw)


# -- targeted cases -----------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    ["volume-show", "é"], ["volume-show", "\udcff"], ["volume-show", "a b"],
    ["volume-show", "../../attachments"], ["volume-delete", ".."], ["volume-delete", "."],
    ["attachment-show", "x?y=z"], ["attachment-list", "--volume-id", "a b&c=d"],
    ["attachment-list", "--status", "\udcff"], ["volume-create", "1", "--name", "\udcff"],
    ["--url", "garbage", "volume-list"], ["--url", "http://[::1", "volume-list"],
    ["--url", "http://127.0.0.1:notaport/v3", "volume-list"],
    ["--token-file", "@directory", "volume-list"], ["--token-file", "@binary", "volume-list"],
    ["--token-file", "@two-lines", "volume-list"], ["--token-file", "@nul", "volume-list"],
    ["--token-file", "@latin", "volume-list"],
    ["attachment-create", "v"], ["attachment-create", "v", "i", "--connect", "maybe"],
    ["--format", "xml", "volume-list"], ["nonsense"], [],
    ["attachment-update", fz.Ref("att0"), "--initiator", "IQN.BAD"],
    ["--os-volume-api-version", "3.27", "attachment-complete", fz.Ref("att0")],
    ["--os-volume-api-version", "3.27", "attachment-create", fz.Ref("vol0"), "i", "--mode",
     "ro"],
    ["--os-volume-api-version", "3.x", "volume-list"], ["--os-volume-api-version", "2",
                                                        "volume-list"],
    ["--os-volume-api-version", "3.99", "volume-list"],
    ["attachment-show", fz.Ref("att0"), "--format", "json"],
    ["attachment-show", fz.Ref("att0"), "--format", "xml"],
])
def test_hostile_arguments_give_one_error_line(env, raw):
    check_run(env, raw)
