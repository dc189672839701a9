"""Hostile input against every API route (issue 7): property-based fuzzing of
methods, paths, project segments, query strings, headers and bodies through
the real WSGI app over a real SQLite store, the fake target and sparse-file
volumes. Every answer: no 5xx, Cinder's fault body on errors, exactly
nothing changed on a refusal, no CHAP secret outside connection_info, and
store and target in agreement after every success.

Each example restores the same seeded world (volumes available, reserved,
attaching, in-use, multiattach, error; attachments in every status) and
sends one to five requests in a row. ISCSIATTACH_FUZZ=full (tools/fuzz) runs 25x
the cases with random seeds.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from tests.unit import fuzz_strategies as fz
from tests.unit.fuzz_requests import Call, Raw, any_call, check_fault_shape, run_call, send, v3_call
from tests.unit.fuzz_world import CASES, INITIATORS, SecretLog, Template, connector, invariants


@pytest.fixture(scope="module")
def template():
    # On tmpfs when there is one: the store commits with fsync, and thousands
    # of restored worlds on a disk spend most of the run waiting for it.
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="iscsiattach-fuzz-", dir=base) as tmp:
        yield Template(os.path.join(tmp, "state"))


@pytest.fixture(scope="module")
def logs():
    """Every line the daemon's code logs, at every level."""
    handler, logger = SecretLog(), logging.getLogger("iscsiattach")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def run_sequence(template, logs, strategy, calls) -> list:
    world = template.restore(strategy)
    try:
        answers = [run_call(world, c, strategy, logs) for c in calls]
        assert invariants(world) == []
        return answers
    finally:
        world.close()


@fz.fuzz_settings(400)
@given(strategy=st.sampled_from(["token", "token", "token", "noauth"]),
       calls=st.lists(any_call, min_size=1, max_size=4))
def test_hostile_requests(template, logs, strategy, calls):
    run_sequence(template, logs, strategy, calls)


@fz.fuzz_settings(200)
@given(calls=st.lists(v3_call(), min_size=2, max_size=5))
def test_hostile_request_sequences_keep_store_and_target_in_step(template, logs, calls):
    run_sequence(template, logs, "token", calls)


# -- targeted cases: the values issue 7 names, each one a case of its own ------------------
def create_with(vid_ref, conn, **extra) -> Call:
    body = {"attachment": {"volume_uuid": vid_ref, "connector": conn, **extra}}
    return Call("POST", ("/v3/attachments",), body=body)


@pytest.mark.parametrize("iqn", fz.BAD_IQNS + [None, 42, ["iqn.2004-10.com.example:h"],
                                              {"iqn": 1}, True])
def test_bad_initiator_names_are_refused_and_change_nothing(template, logs, iqn):
    (ans,) = run_sequence(template, logs, "token",
                          [create_with(fz.Ref("vol0"), {**connector(INITIATORS[0]),
                                                        "initiator": iqn})])
    assert ans.status == 400


@pytest.mark.parametrize("field,value", [
    ("ip", "999.1.1.1"), ("ip", 42), ("ip", "fe80::1%eth0"), ("ip", "\x00"), ("port", -1),
    ("port", 0), ("port", 65536), ("port", 2 ** 63), ("port", "x"), ("host", "h" * 256),
    ("host", 42), ("host", "a\ud800"), ("host", "../../etc"), ("multipath", "maybe"),
    ("multipath", 2), ("mode", "rx"), ("mode", ["ro"]), ("mountpoint", "../../dev/sda\x00"),
])
def test_bad_connector_fields_refused_or_recorded_harmlessly(template, logs, field, value):
    """The connector is os-brick's dict as sent: fields iSCSI reads must be
    valid (400 otherwise); the others are kept as data, never used as paths."""
    (ans,) = run_sequence(template, logs, "token",
                          [create_with(fz.Ref("vol0"), {**connector(INITIATORS[0]),
                                                        field: value})])
    assert ans.status in (200, 400)


SIZES = [0, -1, 2 ** 63, 2 ** 64, 10 ** 30, "1x", 1.5, 1.0, True, False, None, [], {}, "²",
         "١", "", " ", "-1", "0x10", "1e3", 101]


@pytest.mark.parametrize("size", SIZES)
def test_bad_sizes_refused_on_create_and_extend(template, logs, size):
    answers = run_sequence(template, logs, "token", [
        Call("POST", ("/v3/volumes",), body={"volume": {"size": size}}),
        Call("POST", ("/v3/volumes/", fz.Ref("vol0"), "/action"),
             body={"os-extend": {"new_size": size}})])
    assert [a.status for a in answers] == [400, 400]


@pytest.mark.parametrize("name", ["x\x00y", "\x00", "\x7f", "a\nb", "a" * 256, 42, ["x"],
                                  "\ud800", "a\udfffb"])
def test_hostile_volume_names_refused(template, logs, name):
    (ans,) = run_sequence(template, logs, "token", [
        Call("POST", ("/v3/volumes",), body={"volume": {"size": 1, "name": name}})])
    assert ans.status == 400


def test_names_with_dots_and_slashes_are_only_names(template, logs):
    """A name is a label: it never becomes part of a path on disk or in LIO."""
    world_calls = [Call("POST", ("/v3/volumes",), body={"volume": {"size": 1,
                                                                   "name": "../../x"}})]
    (ans,) = run_sequence(template, logs, "token", world_calls)
    assert ans.status == 202 and json.loads(ans.data)["volume"]["name"] == "../../x"
    assert not [n for n in os.listdir(os.path.dirname(template.root)) if n != "state"]


@pytest.mark.parametrize("raw", [b"[" * 5000, b"{\"a\":" * 3000, b"\xff\xfe\x00{",
                                 b'{"volume": {"size": ' + b"9" * 5000 + b"}}",
                                 b'{"volume": {"size": NaN}}', b'"\\ud800"'])
def test_malformed_json_is_a_400(template, logs, raw):
    (ans,) = run_sequence(template, logs, "token",
                          [Call("POST", ("/v3/volumes",), body=Raw(raw))])
    assert ans.status == 400


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=%D9%A1", "limit=-1", "marker=%00"])
def test_odd_paging_arguments_are_a_400(template, logs, query):
    (ans,) = run_sequence(template, logs, "token",
                          [Call("GET", ("/v3/volumes",), query=query)])
    assert ans.status == 400


@pytest.mark.parametrize("version,status", [("volume 3.55", 406), ("volume 2.9", 406),
                                            ("volume 3.٣", 400), ("volume 3.x", 400),
                                            ("compute 3.27", 400), ("volume 3.99999999999", 406)])
def test_unknown_microversions(template, logs, version, status):
    (ans,) = run_sequence(template, logs, "token", [
        Call("GET", ("/v3/attachments",), headers=(("OpenStack-API-Version", version),))])
    assert ans.status == status



@pytest.mark.parametrize("vol,extra,initiator", [
    ("vol3", {"mode": "ro"}, 0),                              # A has it rw already
    ("vol3", {"connector_mode": "ro"}, 0),
    ("vol2", {"instance_uuid": fz.Ref("inst1")}, 1),          # same instance, other host
    ("vol4", {"instance_uuid": fz.Ref("inst4")}, 0),
])
def test_refused_connect_in_create_leaves_no_trace(template, logs, vol, extra, initiator):
    """A create-with-connector refused after the reservation step (409) must
    not leave a row behind: the caller never learns its id."""
    conn = connector(INITIATORS[initiator])
    if extra.pop("connector_mode", None):
        conn["mode"] = "ro"
    (ans,) = run_sequence(template, logs, "token",
                          [create_with(fz.Ref(vol), conn, **extra)])
    assert ans.status == 409


# -- the block backend: "source" is a path the caller names --------------------------------
@pytest.fixture(scope="module")
def block_api():
    """The app over the block backend (registers existing devices under /dev/,
    configured so: by default it allows none):
    the one backend where a request body names a path on this machine."""
    from iscsiattach.attachments.wiring import wire_services
    from iscsiattach.targets.fake import FakeBackend
    from iscsiattach.volumes.block import BlockBackend
    from tests.unit.fuzz_world import PORTALS, PREFIX, make_app
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="iscsiattach-fuzz-block-", dir=base) as tmp:
        services = wire_services(os.path.join(tmp, "state"), FakeBackend(prefix=PREFIX),
                                 BlockBackend(["/dev/"]), PORTALS, max_size_gib=100)
        yield services, make_app(services)
        services.store.close()


DEVICE_PATHS = ["/dev/null", "/dev/null/x", "/dev/zero/../sda", "/dev/../etc/passwd",
                "/dev/disk", "/dev/" + "a" * 300, "/dev/" + "a" * 250, "/dev/nonexistent",
                "/dev/fd/0", "/dev/stdin", "/dev/shm", "/etc/passwd", "dev/sda", "/dev/\x00",
                "/dev/a,b", "/dev/a\nb", "/dev/loop", "/dev//sda", "/dev/./null",
                "/dev/disk/by-id/../../null", "/proc/self/fd/0", ""]


def register(block_api, source) -> int:
    """POST a volume with ``source``; its status, after the common checks."""
    services, app = block_api
    before = services.store.volumes()
    CASES["api requests (block backend)"] += 1
    ans = send(SimpleNamespace(app=app, refs={}),
               Call("POST", ("/v3/volumes",), body={"volume": {"size": 1, "source": source}}),
               "token")
    assert ans.status < 500, (source, ans.data)
    if ans.status >= 400:
        check_fault_shape(ans)
        assert services.store.volumes() == before
    else:       # a real device of this machine: registered, never written; forget it
        services.volume_service.delete(json.loads(ans.data)["volume"]["id"])
    return ans.status


@pytest.mark.parametrize("source", DEVICE_PATHS)
def test_hostile_device_paths_are_refused_cleanly(block_api, source):
    assert register(block_api, source) == 400


@fz.fuzz_settings(100)
@given(source=st.one_of(fz.any_text.map(lambda t: "/dev/" + t), fz.junk))
def test_fuzzed_device_paths_never_fail_the_server(block_api, source):
    assert register(block_api, source) in (202, 400)
