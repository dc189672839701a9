"""Hypothesis strategies for hostile input: ids, IQNs, addresses, sizes,
names, connectors, bodies, headers, paths and query strings.

Values that must name something in the seeded world are ``Ref``s (``vol2``,
``att0``), resolved when a case runs, so a falsifying example prints as a
readable recipe and replays against any copy of the world.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.unit.fuzz_world import INITIATORS

# -- profiles -----------------------------------------------------------------
# quick (default): the unit run, reproducible (derandomized), no example
# database. full: ISCSIATTACH_FUZZ=full (tools/fuzz), random, 25x the cases.
# No deadline in either: a slow example is not a failure (no timed assertions).
_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("iscsiattach-quick", derandomize=True, database=None, **_COMMON)
# Falsifying examples of full runs are kept (results/ is not committed) and
# replayed first by the next one.
_DB = os.path.join(os.path.dirname(__file__), "..", "..", "results", "hypothesis")
settings.register_profile("iscsiattach-full",
                          database=DirectoryBasedExampleDatabase(os.path.normpath(_DB)),
                          **_COMMON)
PROFILE = "iscsiattach-full" if os.environ.get("ISCSIATTACH_FUZZ") == "full" \
    else "iscsiattach-quick"
SCALE = int(os.environ.get("ISCSIATTACH_FUZZ_SCALE", "25")) if PROFILE.endswith("full") else 1


def fuzz_settings(examples: int) -> settings:
    """The profile's settings with ``examples`` cases (times the full scale)."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * SCALE)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, flips: int = 2) -> st.SearchStrategy:
    """``good``, or ``bad`` with probability 2**-flips (coin flips, so that a
    failing case shrinks towards the good side). ``one_of`` with repeated
    branches does not weigh them: hypothesis favours the odd ones."""
    if flips == 0:
        return bad
    return st.booleans().flatmap(lambda b: mostly(good, bad, flips - 1) if b else good)


# -- references into the seeded world ----------------------------------------
@dataclass(frozen=True)
class Ref:
    name: str                # "vol0", "att3", "inst1"
    form: str = "plain"      # plain | upper | braces | hex (other spellings of a UUID)

    def resolve(self, refs: dict[str, str]) -> str:
        value = refs[self.name]
        return {"plain": value, "upper": value.upper(), "braces": "{" + value + "}",
                "hex": value.replace("-", "")}[self.form]


def resolve(value, refs: dict[str, str]):
    """``value`` with every Ref replaced by the id it names, recursively."""
    if isinstance(value, Ref):
        return value.resolve(refs)
    if isinstance(value, dict):
        return {resolve(k, refs): resolve(v, refs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve(v, refs) for v in value]
    return value


def refs(kind: str, count: int, forms=("plain",)) -> st.SearchStrategy:
    return st.builds(Ref, st.sampled_from([f"{kind}{i}" for i in range(count)]),
                     st.sampled_from(forms))


volume_ref = refs("vol", 7)
attachment_ref = refs("att", 7)
instance_ref = refs("inst", 8)

# -- scalars --------------------------------------------------------------------
def branch(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` as ONE branch of a one_of: hypothesis flattens nested
    one_ofs, so a junk strategy of eight kinds would otherwise take eight
    of ten turns from the values listed beside it."""
    return st.deferred(lambda: strategy)



latin1 = st.text(st.characters(max_codepoint=255), max_size=40)
TRAVERSAL = ["..", "../", "../../etc/passwd", "..%2f..%2fetc", "%2e%2e/", "/etc/shadow",
             "a/../../b", "..\\..\\x", "\x00", "x\x00y", "%00", "~root", "./.", "//", ""]
any_text = branch(st.one_of(st.text(max_size=40), st.sampled_from(TRAVERSAL),
                     st.sampled_from(["\ud800", "a\udfffb", "\u202e", "\ufeff", "x" * 300,
                                      "é", "日本", "\n", "\t", " "])))
junk = branch(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                 any_text, st.just([]), st.just({}), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)))
bad_uuid = st.one_of(st.sampled_from([
    "00000000-0000-0000-0000-00000000000g", "-" * 36, "0" * 36, "0" * 32, "1234",
    "00000000-0000-0000-0000-0000000000000", "urn:uuid:x", "{}", "None", "null"]),
    any_text, st.uuids().map(lambda u: str(u)[:-1]))
uuid_like = st.one_of(st.uuids().map(str), volume_ref, attachment_ref, instance_ref,
                      refs("vol", 7, ("upper", "braces", "hex")), bad_uuid, junk)

GOOD_IQNS = list(INITIATORS) + ["iqn.2016-04.com.open-iscsi:1a2b3c4d5e6f",
                                "naa.5001405aaaaaaaaa"]
BAD_IQNS = ["", "iqn", "iqn.", "IQN.2004-10.com.example:h", "iqn.2004-10.COM.example:h",
            "iqn.2004-13.com.example:h", "iqn.04-10.com.example:h", "iqn.2004-10.com:h",
            "iqn.2004-10.com_x.example:h", "iqn.2004-10..example:h", "iqn.2004-10.-a.b:h",
            "iqn.2004-10.com.example:h h", "iqn.2004-10.com.example:h/../x",
            "iqn.2004-10.com.example:h\x00", "iqn.2004-10.com.example:" + "a" * 200,
            "eui.0123456789ABCDEF", "eui.0123", "naa.0123456789abcdef", "naa.5001405",
            "iqn.2004-10.com.example:é", " iqn.2004-10.com.example:h",
            "iqn.2004-10.com.example:h\n", "../../etc/target"]
iqn = st.one_of(st.sampled_from(GOOD_IQNS), st.sampled_from(BAD_IQNS),
                st.from_regex(r"iqn\.[0-9]{4}-[0-9]{2}\.[a-z.]{1,12}(:[a-z0-9:._-]{0,20})?",
                              fullmatch=True),
                junk)
ip = st.one_of(st.ip_addresses().map(str), st.sampled_from([
    "999.1.1.1", "1.2.3", "::1::", "fe80::1%eth0", "[::1]", "0.0.0.0", "255.255.255.255",
    "192.0.2.1:3260", "localhost", "", "1.2.3.4\x00"]), junk)
port = st.one_of(st.integers(min_value=-1, max_value=70000),
                 st.sampled_from([0, 3260, 65535, 65536, 2 ** 63, -2 ** 63, "3260", "x", 1.5,
                                  True, None]))
size = st.one_of(st.integers(min_value=-2, max_value=102),
                 st.sampled_from([0, -1, 2 ** 31, 2 ** 63, 2 ** 64, -2 ** 63, 10 ** 30, "1",
                                  "2", " 1", "1 ", "+1", "-1", "0x10", "1.5", "1e3", "²",
                                  "١", "１", "", 1.5, 1.0, float("inf"), float("nan"), True,
                                  False, None, [], {}, [1]]), junk)
name = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(TRAVERSAL),
                 st.sampled_from(["a" * 255, "a" * 256, "\x7f", "tab\there", "\ud800",
                                  "\U0001F4A9" * 10, "é" * 255]),
                 junk)
mode = st.one_of(st.sampled_from(["rw", "ro", "RW", "r", "", "wo"]), junk)


def maybe_drop(d: dict) -> st.SearchStrategy:
    """``d`` with some keys dropped and maybe one unknown key added."""
    keys = sorted(d)
    dropped = mostly(st.just(set()), st.sets(st.sampled_from(keys))) if keys \
        else st.just(set())
    return st.tuples(dropped, mostly(st.none(), st.tuples(st.text(max_size=12), junk))).map(
        lambda t: {**{k: v for k, v in d.items() if k not in t[0]},
                   **({t[1][0]: t[1][1]} if t[1] else {})})


connector = st.fixed_dictionaries(
    {"initiator": iqn},
    optional={"ip": ip, "host": name, "platform": st.sampled_from(["x86_64", "s390x"]),
              "os_type": st.sampled_from(["linux2", "\x00"]), "port": port,
              "multipath": st.one_of(st.booleans(), st.sampled_from(["true", "False", "maybe",
                                                                    1, 0, None])),
              "mountpoint": st.one_of(st.sampled_from(["/dev/vdb", "../../dev/sda",
                                                       "/dev/vdb\x00x"]), any_text),
              "mode": mode, "do_local_attach": st.booleans(), "uuid": uuid_like}
).flatmap(maybe_drop)
good_connector = st.fixed_dictionaries(
    {"initiator": st.sampled_from(GOOD_IQNS), "ip": st.ip_addresses().map(str),
     "host": st.sampled_from(["h1", "h2"]), "multipath": st.booleans()},
    optional={"mode": st.sampled_from(["rw", "ro"])})
any_connector = mostly(good_connector, st.one_of(connector, st.just({}), st.none(), junk), 1)
