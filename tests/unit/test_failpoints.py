"""The fault-injection registry: inert by default, kills when armed, and its
list of points is the list of point() calls in the source."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from iscsiattach import failpoints

PACKAGE = Path(failpoints.__file__).parent


def _points_in_source() -> dict[str, list[str]]:
    """Every failpoints.point("...") call in the package: name -> files."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "point" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "failpoints":
                arg = node.args[0]
                assert isinstance(arg, ast.Constant), f"{path}: point() needs a literal name"
                found.setdefault(arg.value, []).append(str(path.relative_to(PACKAGE)))
    return found


def test_points_constant_matches_the_calls_in_the_source():
    found = _points_in_source()
    assert sorted(found) == sorted(failpoints.POINTS)
    assert len(set(failpoints.POINTS)) == len(failpoints.POINTS)
    # Each point marks one place: a name used twice could not say where it died.
    assert {n: f for n, f in found.items() if len(f) > 1} == {}


def test_inert_by_default():
    assert os.environ.get(failpoints.ENV) is None
    assert failpoints.armed() == {}
    for name in failpoints.POINTS:
        failpoints.point(name)          # still alive


@pytest.mark.parametrize("spec,want", [
    ("", {}),
    ("connect.after_intent", {"connect.after_intent": 1}),
    ("connect.after_intent@3, delete.after_converge",
     {"connect.after_intent": 3, "delete.after_converge": 1}),
])
def test_parse(spec, want):
    assert failpoints.parse(spec) == want


@pytest.mark.parametrize("spec", ["no.such.point", "connect.after_intent@0",
                                  "connect.after_intent@x", "connect.after_intent@-1"])
def test_parse_refuses_what_it_cannot_honour(spec):
    with pytest.raises(ValueError, match=failpoints.ENV):
        failpoints.parse(spec)


def _run(spec: str, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, failpoints.ENV: spec}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


def test_an_armed_point_kills_with_sigkill_at_its_nth_hit():
    code = ("from iscsiattach import failpoints\n"
            "for i in range(1, 6):\n"
            "    failpoints.point('delete.after_converge')\n"
            "    print('passed', i, flush=True)\n")
    res = _run("delete.after_converge@3", code)
    assert res.returncode == -signal.SIGKILL
    assert res.stdout.split("\n")[:2] == ["passed 1", "passed 2"]
    assert "passed 3" not in res.stdout
    assert f"{failpoints.MARK} delete.after_converge (hit 3)" in res.stderr


def test_other_points_pass_while_one_is_armed():
    code = ("from iscsiattach import failpoints\n"
            "failpoints.point('connect.after_intent')\n"
            "print('alive', flush=True)\n")
    res = _run("delete.after_converge", code)
    assert res.returncode == 0 and res.stdout == "alive\n"


def test_an_unknown_point_in_the_environment_is_refused_at_import():
    res = _run("connect.after_intnet", "import iscsiattach.failpoints")
    assert res.returncode == 1 and "unknown fault point 'connect.after_intnet'" in res.stderr


def test_rearm_reads_the_environment_again_for_a_forked_child():
    code = ("import os\n"
            "from iscsiattach import failpoints\n"
            "failpoints.point('complete.after_attachment')\n"
            "os.environ[failpoints.ENV] = 'complete.after_attachment'\n"
            "failpoints.rearm()\n"
            "print('rearmed', flush=True)\n"
            "failpoints.point('complete.after_attachment')\n"
            "print('survived', flush=True)\n")
    res = _run("", code)
    assert res.returncode == -signal.SIGKILL and res.stdout == "rearmed\n"
