"""Every command example of Cinder's attach/detach devref, pasted as written
with `cinder` replaced by `iscsiattach`, runs through the CLI against the
API over the fake target, sends the microversion it names, and does what
the devref says it does.

The devref is kept in tests/unit/data (as published, Apache-2.0). Its
examples are the lines of its ``` blocks (a bare `attachment-create ...`
synopsis gets the program name in front) and its `usage:` paragraphs, whose
trailing `...` stands for the optional arguments the devref lists under it.
"""
from __future__ import annotations

import json
import re
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from iscsiattach.cli import main as cli_main
from tests.unit.cli_api import serving

DEVREF = Path(__file__).parent / "data" / "attach_detach_conventions_v2.rst"
TOKEN = "devref-token-" + "x" * 30
IQN = "iqn.2004-10.com.example:devref-host"
# What the devref's placeholders stand for here.
VALUES = {"<connect>": "True", "<initiator>": IQN, "<ip>": "192.0.2.10", "<host>": "host1",
          "<platform>": "x86_64", "<ostype>": "linux2", "<multipath>": "False",
          "<mountpoint>": "/dev/vdb", "<instance-uuid>": "4fa0a9e5-5fb1-4d2d-93d5-2b5a0f3d1a11"}


@dataclass(frozen=True)
class Example:
    text: str               # as the devref writes it, `cinder` replaced
    options: tuple[str, ...]    # what its "..." stands for (the listed optional arguments)

    @property
    def command(self) -> str:
        return next(w for w in self.text.split() if w.startswith("attachment-"))

    @property
    def version(self) -> str | None:
        m = re.search(r"--os-volume-api-version (\S+)", self.text)
        return m[1] if m else None


def examples() -> list[Example]:
    lines = DEVREF.read_text().splitlines()
    found: list[Example] = []
    in_block = False
    for n, line in enumerate(lines):
        if line.strip() == "```":
            in_block = not in_block
            continue
        if in_block and line.strip():
            text = line.strip()
            text = re.sub(r"^cinder ", "iscsiattach ", text) if text.startswith("cinder ") \
                else "iscsiattach " + text
            found.append(Example(text, ()))
        elif line.startswith("usage: cinder "):
            text = line.removeprefix("usage: ")
            for more in lines[n + 1:]:
                if not more.strip() or more.endswith(":"):
                    break
                text += " " + more.strip()
            found.append(Example(text.replace("cinder ", "iscsiattach ", 1),
                                 _optional_arguments(lines, n)))
    return found


def _optional_arguments(lines: list[str], start: int) -> tuple[str, ...]:
    """The `--opt <opt>` lines of the "Optional arguments:" list after ``start``."""
    opts: list[str] = []
    listing = False
    for line in lines[start + 1:]:
        if line.strip() == "Optional arguments:":
            listing = True
        elif listing and line.startswith("--"):
            name, metavar = line.split()[:2]
            opts.append(f"{name} {metavar}")
        elif listing:
            break
    return tuple(opts)


EXAMPLES = examples()


def test_the_devref_examples_are_all_found():
    texts = [e.text for e in EXAMPLES]
    assert len(texts) == 5, texts
    assert {e.command for e in EXAMPLES} == {"attachment-create", "attachment-update",
                                             "attachment-delete"}
    assert all(e.text.startswith("iscsiattach ") and "cinder" not in e.text for e in EXAMPLES)
    # The usage paragraphs carry their listed options (create has --connect too).
    assert {len(e.options) for e in EXAMPLES if e.options} == {8, 7}


@pytest.fixture
def api(services, monkeypatch):
    """The API on loopback; the microversion header of every request."""
    with serving(services, monkeypatch, TOKEN, IQN) as versions:
        yield versions


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def table_rows(text: str) -> list[dict[str, str]]:
    """Each Property | Value table of ``text`` as a dict."""
    tables: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("| Property"):
            tables.append({})
        elif line.startswith("| ") and tables:
            key, value = (c.strip() for c in line.strip("|").split("|", 1))
            tables[-1][key] = value
    return tables


def devref_connection_properties() -> set[str]:
    """The properties of the connection-information table the devref shows."""
    text = DEVREF.read_text()
    block = text[text.index("Returns the connection information"):]
    return {line.split("|")[1].strip() for line in block.splitlines()
            if line.startswith("| ") and "Property" not in line
            and line.split("|")[1].strip()} - {"attachment-update"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.text for e in EXAMPLES])
def test_devref_example_runs_as_pasted(example, api, capsys, fake_target):
    code, out, err = run(capsys, ["volume-create", "1", "--format", "json"])
    vid = json.loads(out)["id"]
    reserved = ""
    if example.command != "attachment-create":
        code, out, _ = run(capsys, ["--format", "json", "attachment-create", vid,
                                    str(uuid.uuid4())])
        reserved = json.loads(out)["id"]
    text = example.text.replace("<volume-id>", vid).replace("<attachment-id>", reserved)
    text = text.replace("...", " " + " ".join(example.options))
    for placeholder, value in VALUES.items():
        text = text.replace(placeholder, value)
    argv = shlex.split(text)
    assert argv[0] == "iscsiattach" and not [w for w in argv if w.startswith("<")], argv
    api.clear()
    code, out, err = run(capsys, argv[1:])
    assert (code, err) == (0, ""), f"{example.text}: {err}"
    if example.version:
        assert api and set(api) == {f"volume {example.version}"}, api

    tables = table_rows(out)
    if example.command == "attachment-create" and "--connect True" in text:
        # "Returns the connection information for the attachment".
        att, info = tables
        assert set(info) >= devref_connection_properties()
        assert info["volume_id"] == vid and info["attachment_id"] == att["id"]
        assert info["auth_password"] == "***" and info["access_mode"] == "rw"
        assert IQN in fake_target.inspect(vid).acls
    elif example.command == "attachment-create":
        # "simply creates an empty Attachment record": reserved, no connection.
        assert len(tables) == 1 and tables[0]["status"] == "reserved"
        assert tables[0]["volume_id"] == vid
        assert fake_target.inspect(vid) is None or not fake_target.inspect(vid).acls
    elif example.command == "attachment-update":
        # Connects the reservation: the connector's initiator gets its ACL.
        att, info = tables
        assert att["id"] == reserved and att["status"] == "attaching"
        assert info["target_iqn"].endswith(vid) and IQN in fake_target.inspect(vid).acls
    else:
        assert out == ""
        # Detached: the attachment says so and the volume is free again.
        code, out, _ = run(capsys, ["--format", "json", "attachment-show", reserved])
        assert json.loads(out)["status"] == "detached"
        code, out, _ = run(capsys, ["--format", "json", "volume-show", vid])
        assert json.loads(out)["status"] == "available"
