"""--os-volume-api-version, as cinderclient takes it.

The value is ``3``, ``3.N`` or ``3.latest``; it is sent as the request's
microversion (``OpenStack-API-Version: volume 3.N``). As in cinderclient, a
command or an option that needs a later version than the one asked for is
refused before anything is sent: attachments came with 3.27, their
completion with 3.44, the attach mode with 3.54. A version the daemon does
not serve is its own answer (406, one line).
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from iscsiattach.exception import InvalidInput

OPTION = "--os-volume-api-version"
MAJOR = 3
DEFAULT = "3.54"                # what this client speaks: the daemon's maximum
_FORM = re.compile(r"([1-9][0-9]{0,8})(?:\.(0|[1-9][0-9]{0,8}|latest))?")

ATTACHMENTS = "3.27"
ATTACH_COMPLETE = "3.44"
ATTACH_MODE = "3.54"
# The version each command needs, as cinderclient's `api_versions.wraps`.
COMMANDS = {
    "attachment-create": ATTACHMENTS, "attachment-update": ATTACHMENTS,
    "attachment-delete": ATTACHMENTS, "attachment-show": ATTACHMENTS,
    "attachment-list": ATTACHMENTS, "attachment-complete": ATTACH_COMPLETE,
    "attach": ATTACH_COMPLETE, "detach": ATTACHMENTS,
}
# Options that need a later version than their command (cinderclient's
# `start_version`): (command, option) -> version.
OPTIONS = {("attachment-create", "--mode"): ATTACH_MODE, ("attach", "--mode"): ATTACH_MODE}


@dataclass(frozen=True)
class ApiVersion:
    major: int
    minor: int | None           # None: "latest", whatever the daemon's maximum is

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        m = _FORM.fullmatch(text)
        if not m:
            raise InvalidInput(f"{OPTION} {text!r}: expected X, X.Y or X.latest "
                               f"(such as 3.27)")
        major = int(m.group(1))
        if major != MAJOR:
            raise InvalidInput(f"{OPTION} {text}: only API version {MAJOR} is supported")
        minor = m.group(2) or "0"
        return cls(major, None if minor == "latest" else int(minor))

    @property
    def header(self) -> str:
        """The value of the microversion header."""
        return "latest" if self.minor is None else f"{self.major}.{self.minor}"

    def at_least(self, other: str) -> bool:
        major, minor = (int(p) for p in other.split("."))
        return self.minor is None or (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.latest" if self.minor is None else f"{self.major}.{self.minor}"


def check(version: ApiVersion, command: str, args: argparse.Namespace) -> None:
    """Refuse, in one line, a command or an option given in ``args`` that
    ``version`` does not have."""
    need = COMMANDS.get(command)
    if need and not version.at_least(need):
        raise InvalidInput(f"{command} is only available since microversion {need}; "
                           f"{OPTION} {version} asks for an earlier one")
    for (cmd, option), need in OPTIONS.items():
        given = getattr(args, option.lstrip("-").replace("-", "_"), None) is not None
        if cmd == command and given and not version.at_least(need):
            raise InvalidInput(f"{command}: '{option}' argument is only allowed since "
                               f"microversion {need} ({OPTION} {version})")


def help_note(command: str) -> str:
    need = COMMANDS.get(command)
    return f" (API version {need} and later)" if need else ""
