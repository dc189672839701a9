"""The command line of `iscsiattach`: one argparse parser, which the man page
and the shell completion scripts are made from too (``manpage``,
``completion``).

The global options are cinderclient's where the devref puts them
(``iscsiattach --os-volume-api-version 3.27 attachment-create ...``); the
output options (--format, --show-secrets, --debug) are taken before or after
the command.
"""
from __future__ import annotations

import argparse
import configparser
import importlib.metadata
import os
from pathlib import Path
from typing import Any, NoReturn

from iscsiattach.cli import apiversion
from iscsiattach.cli.client import DEFAULT_URL
from iscsiattach.exception import EXIT_USAGE

PROG = "iscsiattach"
ERROR = "iscsiattach: error: "
DESCRIPTION = "iscsiattach: talk to iscsiattachd with the devref's commands."
EPILOG = """environment:
  ISCSIATTACH_URL         daemon URL, as --url
  ISCSIATTACH_TOKEN       the API token (comes first; never pass a token in argv)
  ISCSIATTACH_TOKEN_FILE  file with the API token, as --token-file
                          (default /var/lib/iscsiattach/api-token)
  ISCSIATTACH_CACERT      CA or self-signed certificate for https://, as --cacert

No proxy is used: http_proxy, https_proxy and ALL_PROXY are ignored."""
# What a positional argument names, for completion: the metavar -> the kind
# of id `iscsiattach --complete KIND` lists.
ID_KINDS = {"<volume-id>": "volumes", "<attachment-id>": "attachments",
            "<attachment-id|volume-id>": "attachments volumes"}


def package_version() -> str:
    """The installed package's version; in a bare checkout (not installed)
    the one setup.cfg declares."""
    try:
        return importlib.metadata.version("iscsiattach")
    except importlib.metadata.PackageNotFoundError:
        return setup_cfg_version(Path(__file__).resolve().parents[2] / "setup.cfg")


def setup_cfg_version(path: Path) -> str:
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return "unknown"
    return cfg.get("metadata", "version", fallback="unknown")


class VersionAction(argparse.Action):
    """--version, looked up only when asked (not on every command)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        print(f"{parser.prog} {package_version()}")     # stdout, as argparse's own
        parser.exit(0)


class CompleteAction(argparse.Action):
    """The hidden --complete KIND: the ids of KIND (volumes, attachments)
    from the API, one a line, for the shell completion scripts; silent on
    any error. Uses --url, --token-file and --cacert given before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> NoReturn:
        from iscsiattach.cli.complete import list_ids
        for ident in list_ids(str(values), namespace.url, namespace.token_file,
                              namespace.cacert):
            print(ident)
        parser.exit(0)


def one_line(text: str) -> str:
    """``text`` with control characters escaped: an error is exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Parser(argparse.ArgumentParser):
    """Usage errors as every other error: one line, exit 2 (argparse's code)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        self.exit(EXIT_USAGE, f"{ERROR}{where + ': ' if where else ''}{one_line(message)} "
                              f"(see {self.prog} --help)\n")


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, not {text!r}")


def add_output_options(p: argparse.ArgumentParser, top: bool) -> None:
    """--format, --show-secrets and --debug: on the top parser with their
    defaults, on each command with none (so one given before the command
    stands unless given again after it)."""
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS
    g = p.add_argument_group("output options (before or after the command)")
    g.add_argument("--format", choices=["table", "json"], default=default("table"),
                   help="output format: cinderclient's tables or JSON (default table)")
    g.add_argument("--show-secrets", action="store_true", default=default(False),
                   help="show the CHAP secrets of connection info; without it a table "
                        "shows *** and JSON null with <key>_withheld true")
    g.add_argument("--debug", action="store_true", default=default(False),
                   help="print the log of the libraries (os-brick, oslo) and of "
                        "iscsiattach at debug level on stderr")


def add_connector_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connector (as os-brick's get_connector_properties)")
    g.add_argument("--initiator", help="iSCSI initiator IQN of the host "
                   "(default: this host's, from /etc/iscsi/initiatorname.iscsi)")
    g.add_argument("--ip", help="IP address of the host")
    g.add_argument("--host", help="name of the host (default: this host's name)")
    g.add_argument("--platform", default="x86_64", help="platform (default x86_64)")
    g.add_argument("--ostype", default="linux2", help="OS type (default linux2)")
    g.add_argument("--multipath", type=boolean, default=False, metavar="True|False",
                   help="use multipath (default False)")
    g.add_argument("--mountpoint", help="where the volume will be attached, e.g. /dev/vdb")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--url", default=os.environ.get("ISCSIATTACH_URL", DEFAULT_URL),
                     help="daemon URL, http(s)://host:port/v3 or unix:/path "
                          "(env ISCSIATTACH_URL; default %(default)s)")
    top.add_argument("--token-file", metavar="FILE",
                     help="file with the API token (env ISCSIATTACH_TOKEN_FILE; default "
                          "/var/lib/iscsiattach/api-token; ISCSIATTACH_TOKEN, when set, "
                          "comes first)")
    top.add_argument("--cacert", metavar="FILE", default=os.environ.get("ISCSIATTACH_CACERT"),
                     help="for https:// URLs: trust only this CA or self-signed daemon "
                          "certificate (PEM) instead of the system's CAs; the host name "
                          "is checked either way (env ISCSIATTACH_CACERT)")
    top.add_argument(apiversion.OPTION, "--os_volume_api_version", dest="api_version",
                     metavar="<volume-api-ver>", default=apiversion.DEFAULT,
                     help="Block Storage API microversion to send: X, X.Y or X.latest "
                          "(only 3; default %(default)s). A command that needs a later "
                          "one is refused, as by cinderclient")
    add_output_options(top, top=True)
    top.add_argument("--version", action=VersionAction,
                     help="print the version of iscsiattach and exit")
    top.add_argument("--complete", action=CompleteAction, choices=["volumes", "attachments"],
                     help=argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text + apiversion.help_note(name),
                           description=text[:1].upper() + text[1:] + "."
                           + apiversion.help_note(name))
        add_output_options(p, top=False)
        return p

    p = command("attachment-create", "reserve a volume, or reserve and connect")
    p.add_argument("volume_id", metavar="<volume-id>", help="ID of the volume to attach")
    p.add_argument("instance_uuid", metavar="<instance-uuid>",
                   help="ID of the instance (server) it is for")
    p.add_argument("--connect", type=boolean, default=False, metavar="True|False",
                   help="connect now with the connector below (default False)")
    p.add_argument("--mode", choices=["rw", "ro"],
                   help=f"attach mode (API version {apiversion.ATTACH_MODE} and later)")
    add_connector_args(p)
    p = command("attachment-update", "connect an attachment with a connector")
    p.add_argument("attachment_id", metavar="<attachment-id>", help="ID of the attachment")
    add_connector_args(p)
    for name, text in (("attachment-complete", "mark attachments attached"),
                       ("attachment-delete", "detach: delete attachments")):
        p = command(name, text)
        p.add_argument("attachment_ids", metavar="<attachment-id>", nargs="+",
                       help="ID of an attachment (several may be given)")
    p = command("attachment-show", "show one attachment")
    p.add_argument("attachment_id", metavar="<attachment-id>", help="ID of the attachment")
    p = command("attachment-list", "list attachments")
    p.add_argument("--volume-id", metavar="<volume-id>", help="only those of this volume")
    p.add_argument("--status", metavar="<status>", help="only those in this status")
    p = command("session-list", "who is logged in to the node's targets (read from LIO)")
    p.add_argument("--volume-id", metavar="<volume-id>", help="only those of this volume")

    p = command("volume-create", "create a volume")
    p.add_argument("size", type=int, metavar="<size>", help="size in GiB")
    p.add_argument("--name", help="name of the volume")
    p.add_argument("--multiattach", action="store_true", help="allow several hosts at once")
    p.add_argument("--source", metavar="PATH",
                   help="block backend: path of the existing device to register")
    for name, text in (("volume-show", "show a volume"), ("volume-delete", "delete a volume")):
        p = command(name, text)
        p.add_argument("volume_id", metavar="<volume-id>", help="ID of the volume")
    command("volume-list", "list volumes")
    p = command("volume-extend", "grow a volume")
    p.add_argument("volume_id", metavar="<volume-id>", help="ID of the volume")
    p.add_argument("new_size", type=int, metavar="<new-size>", help="new size in GiB")
    command("status", "the daemon's health: ready, last reconcile, counts")

    p = command("attach", "attach a volume to this host (os-brick), confirm the device, "
                          "print its path")
    p.add_argument("volume_id", metavar="<volume-id>", help="ID of the volume")
    p.add_argument("--instance", help="instance UUID to record (default: a new one)")
    p.add_argument("--mode", choices=["rw", "ro"],
                   help=f"attach mode (default rw; ro needs API version "
                        f"{apiversion.ATTACH_MODE} and later)")
    p.add_argument("--multipath", action="store_true", help="log in on every portal")
    p.add_argument("--my-ip", help="this host's storage address for the connector")
    p = command("detach", "flush, disconnect and delete the attachment")
    p.add_argument("ident", metavar="<attachment-id|volume-id>",
                   help="the attachment, or every attachment of this host to the volume")
    p.add_argument("--force", action="store_true",
                   help="detach even if the device is mounted or open")
    return top


def subcommands(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The command parsers of ``top``, by name, in the order they were added."""
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
