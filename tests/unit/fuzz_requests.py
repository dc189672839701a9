"""Hostile HTTP requests for the in-process API app, and the checks every
answer must pass: no 5xx, Cinder's fault body on errors, nothing changed on
a refusal, no CHAP secret where it does not belong.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import strategies as st

from iscsiattach.api.faults import FAULT_NAMES
from tests.unit import asgi, fuzz_strategies as fz
from tests.unit.api_client import _Headers
from tests.unit.fuzz_world import CASES, TOKEN, World, invariants, secrets_of, snapshot

PROJECT = "0123456789abcdef0123456789abcdef"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "TRACE", "BREW"]


@dataclass(frozen=True)
class Raw:
    """A body sent as these bytes, not as JSON made from a value."""
    data: bytes


@dataclass(frozen=True)
class Call:
    method: str
    path: tuple                      # pieces: str or Ref, concatenated
    query: object = ()               # ((key, value), ...) or a raw str
    body: object = None              # a value (sent as JSON), Raw, or None: no body
    token: str | None = "good"       # "good": the world's valid token
    headers: tuple = (("OpenStack-API-Version", "volume 3.54"),)   # latin-1 values

    def environ(self, refs: dict[str, str], strategy: str) -> dict:
        path = "".join(fz.resolve(p, refs) if isinstance(p, fz.Ref) else p for p in self.path)
        if isinstance(self.query, str):
            query = self.query
        else:
            query = "&".join(f"{quote(str(k))}={quote(str(fz.resolve(v, refs)))}"
                             for k, v in self.query)
        payload = _payload(self.body, refs)
        env = {"REQUEST_METHOD": self.method, "PATH_INFO": path, "QUERY_STRING": query,
               "wsgi.input": io.BytesIO(payload), "CONTENT_LENGTH": str(len(payload)),
               "CONTENT_TYPE": "application/json", "wsgi.url_scheme": "http",
               "HTTP_HOST": "127.0.0.1:8776"}
        token = {"good": TOKEN if strategy == "token" else "fuzz:project"}.get(
            self.token, self.token)
        if token is not None:
            env["HTTP_X_AUTH_TOKEN"] = token
        for name, value in self.headers:
            key = name.upper().replace("-", "_")
            env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
        return env


def _payload(body, refs) -> bytes:
    if body is None:
        return b""
    if isinstance(body, Raw):
        return body.data
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a client may send them.
    return json.dumps(fz.resolve(body, refs)).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    data: bytes
    logs: list[str] = field(default_factory=list)


def send(world: World, call: Call, strategy: str) -> Answer:
    status, headers, data = asgi.call(world.app, call.environ(world.refs, strategy))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers)
    return Answer(status, _Headers(headers), data)


# -- the checks -------------------------------------------------------------------
def check_fault_shape(ans: Answer) -> None:
    """Cinder's fault: {"<name>": {"code": N, "message": "..."}}, as JSON."""
    assert ans.headers.get("Content-Type", "").startswith("application/json"), ans
    body = json.loads(ans.data)
    assert isinstance(body, dict) and len(body) == 1, body
    ((name, inner),) = body.items()
    assert name == FAULT_NAMES.get(ans.status, "computeFault"), body
    assert inner["code"] == ans.status and isinstance(inner["message"], str)
    assert inner["message"].strip(), body


def visible_text(ans: Answer) -> str:
    """The answer without the one place a secret may be: connection_info's
    auth_password, for the caller that connected."""
    try:
        body = json.loads(ans.data)
    except ValueError:
        return ans.data.decode(errors="replace")
    info = (body.get("attachment") or {}).get("connection_info") \
        if isinstance(body, dict) and isinstance(body.get("attachment"), dict) else None
    if isinstance(info, dict):
        info.pop("auth_password", None)
    return json.dumps(body)


def run_call(world: World, call: Call, strategy: str, log_lines: list[str]) -> Answer:
    """One request with every check; returns the answer for the caller's own."""
    before = snapshot(world)
    secrets = secrets_of(world)
    del log_lines[:]
    CASES["api requests"] += 1
    ans = send(world, call, strategy)
    assert 100 <= ans.status < 500, (ans.status, ans.data[:300], log_lines[-3:])
    CASES[f"api requests answered {ans.status}"] += 1
    assert int(ans.headers["Content-Length"]) == len(ans.data)
    assert ans.headers.get("x-openstack-request-id", "").startswith("req-")
    if ans.status >= 400:
        check_fault_shape(ans)
        after = snapshot(world)
        assert after == before, f"refused with {ans.status} but changed state: {ans.data!r}"
    elif ans.data and not call.path[0].startswith("/metrics"):
        json.loads(ans.data)
    leaked = secrets | secrets_of(world)
    text = visible_text(ans)
    assert not [s for s in leaked if s in text], "a CHAP secret in a response"
    assert not [s for s in leaked for line in log_lines if s in line], "a CHAP secret in a log"
    if 200 <= ans.status < 300 and call.method.upper() in ("POST", "PUT", "DELETE"):
        assert invariants(world) == []
    return ans


# -- strategies ---------------------------------------------------------------------
# Mostly paths that route, so that most cases reach the handlers and the
# service; the rest probe the router itself.
project = fz.mostly(st.sampled_from(["", "/" + PROJECT]), st.one_of(
    st.sampled_from(["/../..", "/-", "/%2e%2e", "/ABC", "/a/b"]), fz.latin1.map(lambda t: "/" + t)),
    3)
odd_id = st.one_of(st.uuids().map(str), st.sampled_from(["-" * 36, "0" * 36, "g" * 36, "A" * 36]),
                   st.sampled_from(fz.TRAVERSAL), fz.latin1)
ID_OF = {
    "AID": fz.mostly(fz.attachment_ref, st.one_of(fz.refs("att", 7, ("upper",)), fz.volume_ref,
                                                  odd_id)),
    "VID": fz.mostly(fz.volume_ref, st.one_of(fz.refs("vol", 7, ("upper", "hex", "braces")),
                                              fz.attachment_ref, odd_id))}
attachment_body = st.fixed_dictionaries({
    "volume_uuid": st.one_of(fz.volume_ref, fz.volume_ref, fz.uuid_like),
    "instance_uuid": st.one_of(st.none(), fz.instance_ref, st.uuids().map(str), fz.uuid_like),
    "connector": fz.any_connector, "mode": fz.mode}).flatmap(fz.maybe_drop)
volume_body = st.fixed_dictionaries({
    "size": fz.size, "name": fz.name, "multiattach": st.one_of(st.booleans(), fz.junk),
    "source": st.one_of(st.none(), fz.any_text)},
    optional={"description": fz.any_text, "metadata": fz.junk, "volume_type": fz.junk,
              "snapshot_id": fz.uuid_like, "imageRef": fz.junk}).flatmap(fz.maybe_drop)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), fz.any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(fz.any_text, inner, max_size=3)), max_leaves=8)
raw_bodies = st.one_of(st.binary(max_size=64).map(Raw), st.sampled_from([
    Raw(b"[" * 5000), Raw(b"{\"a\":" * 3000), Raw(b'{"volume": {"size": 1'),
    Raw(b"\xef\xbb\xbf{}"), Raw(b"NaN"), Raw(b'{"volume": {"size": NaN}}'),
    Raw(b'{"volume": {"size": 1e400}}'), Raw(b'{"volume": {"size": 1, "size": 2}}'),
    Raw(b'{"volume": {"size": ' + b"9" * 5000 + b"}}"), Raw(b"\xff\xfe\x00{"),
    Raw(b'{"volume": {"size": 1, "name": "' + b"a" * 70000 + b'"}}'), Raw(b"null"),
    Raw(b'"\\ud800"'), Raw(b'{"os-extend": {"new_size": "\\u00b2"}}'), Raw(b" "),
    Raw('{"volume": {"size": 1, "name": "\u00e9"}}'.encode("latin-1"))]))


def wrapped(key: str, inner: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly {key: inner}; sometimes the wrong envelope, junk or raw bytes."""
    return fz.mostly(inner.map(lambda v: {key: v}), st.one_of(st.dictionaries(st.sampled_from(
        [key, "attachment", "volume", "os-extend"]), st.one_of(inner, fz.junk), max_size=2),
        json_value, raw_bodies), 3)


complete_body = fz.mostly(st.just({"os-complete": None}), st.one_of(
                          st.dictionaries(st.sampled_from(["os-complete", "os-extend",
                                                           "os-detach"]), fz.junk, max_size=2),
                          json_value, raw_bodies), 3)
extend_body = wrapped("os-extend", st.fixed_dictionaries({"new_size": fz.size}).flatmap(
    fz.maybe_drop))
none_or_junk_body = fz.mostly(st.none(), st.one_of(json_value, raw_bodies), 3)

# (method, pieces after "/v3<project>", body strategy)
ROUTES = [
    ("POST", ("/attachments",), wrapped("attachment", attachment_body)),
    ("GET", ("/attachments",), none_or_junk_body),
    ("GET", ("/attachments/detail",), none_or_junk_body),
    ("GET", ("/attachments/", "AID"), none_or_junk_body),
    ("PUT", ("/attachments/", "AID"), wrapped("attachment", st.fixed_dictionaries(
        {"connector": fz.any_connector}).flatmap(fz.maybe_drop))),
    ("DELETE", ("/attachments/", "AID"), none_or_junk_body),
    ("POST", ("/attachments/", "AID", "/action"), complete_body),
    ("POST", ("/volumes",), wrapped("volume", volume_body)),
    ("GET", ("/volumes",), none_or_junk_body),
    ("GET", ("/volumes/detail",), none_or_junk_body),
    ("GET", ("/volumes/", "VID"), none_or_junk_body),
    ("DELETE", ("/volumes/", "VID"), none_or_junk_body),
    ("POST", ("/volumes/", "VID", "/action"), extend_body),
]
PUBLIC = ["/", "", "/metrics", "/healthz", "/v3", "/v3/", "/healthz/", "/metrics/../v3",
          "//", "/v2/volumes", "/v3//volumes"]


@st.composite
def v3_call(draw) -> Call:
    method, pieces, body = draw(st.sampled_from(ROUTES))
    method = draw(fz.mostly(st.just(method), st.sampled_from(METHODS), 3))
    path = ["/v3", draw(project)] + [draw(ID_OF[p]) if p in ID_OF else p for p in pieces]
    tail = draw(fz.mostly(st.just(""), st.sampled_from(["/", "/x", "/.."]), 3))
    return Call(method, tuple(path) + ((tail,) if tail else ()), draw(query),
                draw(body), draw(token), draw(headers))


@st.composite
def public_call(draw) -> Call:
    path = draw(st.one_of(st.sampled_from(PUBLIC), fz.latin1.map(lambda t: "/" + t)))
    return Call(draw(st.sampled_from(METHODS)), (path,), draw(query), draw(none_or_junk_body),
                draw(token), draw(headers))


query_value = st.one_of(fz.volume_ref, fz.attachment_ref, st.uuids().map(str),
                        st.sampled_from(["²", "-1", "0", "1", "3", "99999999999999999999",
                                         "reserved", "attached", "1.5", " 2"]),
                        fz.latin1, st.sampled_from(fz.TRAVERSAL))
query = fz.mostly(st.just(()), st.one_of(
    st.lists(st.tuples(st.sampled_from(["volume_id", "status", "attach_status", "marker",
                                        "limit", "offset", "sort", "all_tenants"]),
                       query_value), max_size=3).map(tuple),
    fz.latin1, st.sampled_from(["%zz", "&&=&", "limit", "limit=", "marker=%00",
                                "limit=%C2%B2", "a=" + "b" * 5000])), 1)
version = st.one_of(
    st.integers(27, 54).map(lambda n: f"volume 3.{n}"), st.integers(0, 60).map(
        lambda n: f"volume 3.{n}"),
    st.sampled_from(["volume latest", "volume 3.27", "volume 3.44", "volume 3.54", "volume",
                     "volume ", "compute 3.27", "volume 4.0", "volume 2.0", "volume 3.٣",
                     "volume 3.54.1", "VOLUME 3.54", "volume  3.54", "volume 03.54",
                     "volume 3.", "volume -3.5", "volume 3.99999999999999999999"]),
    fz.latin1)
headers = st.lists(st.one_of(
    st.tuples(st.just("OpenStack-API-Version"), version),
    st.tuples(st.just("OpenStack-API-Version"), version),
    st.tuples(st.just("OpenStack-Volume-microversion"),
              st.one_of(st.sampled_from(["3.27", "3.54", "latest", "9.9"]), fz.latin1)),
    st.tuples(st.just("X-OpenStack-Request-Id"), fz.latin1),
    st.tuples(st.just("Content-Type"), st.one_of(st.sampled_from(
        ["application/json", "text/plain", "application/xml", "multipart/form-data",
         ""]), fz.latin1)),
    st.tuples(st.just("Content-Length"), st.sampled_from(["-1", "abc", "0", "99999999999",
                                                          " 5", "1e3"]))),
    max_size=2)
headers = fz.mostly(st.just(()), headers, 2).map(
    lambda hs: (("OpenStack-API-Version", "volume 3.54"),) + tuple(hs))
bad_tokens = st.sampled_from(["", "x", "admin:admin", "a" * 10000, TOKEN + " ", TOKEN[:-1],
                              "é" * 16])
token = fz.mostly(st.just("good"), st.one_of(st.none(), bad_tokens, fz.latin1), 3)
any_call = fz.mostly(v3_call(), public_call(), 3)
