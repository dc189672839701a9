"""iscsiattach: talk to iscsiattachd with the devref's commands.

    iscsiattach attachment-create <volume-id> <instance-uuid> [--connect True] ...
    iscsiattach attachment-update <attachment-id> --initiator IQN ...
    iscsiattach attachment-complete|attachment-delete|attachment-show <attachment-id>
    iscsiattach attachment-list [--volume-id ID] [--status S]
    iscsiattach volume-create|volume-list|volume-show|volume-delete|volume-extend

The daemon's URL comes from --url or ISCSIATTACH_URL (http://, https://
or unix:/path); the token from ISCSIATTACH_TOKEN or a token file
(--token-file, ISCSIATTACH_TOKEN_FILE, default /var/lib/iscsiattach/api-token),
never from the command line. https:// certificates are always verified:
against the system's CAs, or only --cacert / ISCSIATTACH_CACERT. No proxy
is ever used. Errors are one line and a non-zero exit.
"""
from __future__ import annotations

import argparse
import configparser
import importlib.metadata
import os
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

from iscsiattach.cli import host, output
from iscsiattach.cli.client import DEFAULT_URL, Client, find_token, query, segment
from iscsiattach.exception import EXIT_USAGE, InvalidInput, IscsiAttachError, exit_code
from iscsiattach.host.initiator import local_initiator

API_VERSION = "3.54"
ATTACHMENT_COLUMNS = [("id", "ID"), ("volume_id", "Volume ID"), ("status", "Status"),
                      ("instance", "Server ID")]
VOLUME_COLUMNS = [("id", "ID"), ("status", "Status"), ("name", "Name"), ("size", "Size"),
                  ("multiattach", "Multiattach")]


ERROR = "iscsiattach: error: "
WARNING = "iscsiattach: warning: "
EPILOG = """environment:
  ISCSIATTACH_URL         daemon URL, as --url
  ISCSIATTACH_TOKEN       the API token (comes first; never pass a token in argv)
  ISCSIATTACH_TOKEN_FILE  file with the API token, as --token-file
                          (default /var/lib/iscsiattach/api-token)
  ISCSIATTACH_CACERT      CA or self-signed certificate for https://, as --cacert

No proxy is used: http_proxy, https_proxy and ALL_PROXY are ignored."""
NOAUTH_WARNING = ("the daemon runs without authentication (auth_strategy noauth): "
                  "any local user who can reach its API can call it")


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


def warn(message: str) -> None:
    print(f"{WARNING}{one_line(message)}", file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` with control characters escaped: an error is exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Parser(argparse.ArgumentParser):
    """Usage errors as every other error: one line, exit 2 (argparse's code)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("iscsiattach").strip()
        self.exit(EXIT_USAGE, f"{ERROR}{where + ': ' if where else ''}{one_line(message)} "
                              f"(see {self.prog} --help)\n")


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, not {text!r}")


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


def connector(args: argparse.Namespace) -> dict[str, Any]:
    initiator = args.initiator or local_initiator()
    if not initiator:
        raise InvalidInput("no initiator: pass --initiator IQN "
                           "(no /etc/iscsi/initiatorname.iscsi)")
    return {"initiator": initiator, "ip": args.ip, "host": args.host or socket.gethostname(),
            "platform": args.platform, "os_type": args.ostype, "multipath": args.multipath,
            "mountpoint": args.mountpoint}


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="iscsiattach", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--url", default=os.environ.get("ISCSIATTACH_URL", DEFAULT_URL),
                     help="daemon URL, http(s)://host:port/v3 or unix:/path "
                          "(env ISCSIATTACH_URL; default %(default)s)")
    top.add_argument("--token-file", help="file with the API token (env "
                     "ISCSIATTACH_TOKEN_FILE; default /var/lib/iscsiattach/api-token; "
                     "ISCSIATTACH_TOKEN, when set, comes first)")
    top.add_argument("--cacert", metavar="FILE", default=os.environ.get("ISCSIATTACH_CACERT"),
                     help="for https:// URLs: trust only this CA or self-signed daemon "
                          "certificate (PEM) instead of the system's CAs; the host name "
                          "is checked either way (env ISCSIATTACH_CACERT)")
    top.add_argument("--format", choices=["table", "json"], default="table",
                     help="output format (default table)")
    top.add_argument("--show-secrets", action="store_true",
                     help="print the CHAP secret instead of ***")
    top.add_argument("--version", action=VersionAction,
                     help="print the version of iscsiattach and exit")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("attachment-create", help="reserve a volume, or reserve and connect")
    p.add_argument("volume_id", metavar="<volume-id>")
    p.add_argument("instance_uuid", metavar="<instance-uuid>")
    p.add_argument("--connect", type=boolean, default=False, metavar="True|False",
                   help="connect now with the connector below (default False)")
    p.add_argument("--mode", choices=["rw", "ro"], help="attach mode (API 3.54)")
    add_connector_args(p)
    p = sub.add_parser("attachment-update", help="connect an attachment with a connector")
    p.add_argument("attachment_id", metavar="<attachment-id>")
    add_connector_args(p)
    for name, text in (("attachment-complete", "mark attachments attached"),
                       ("attachment-delete", "detach: delete attachments")):
        p = sub.add_parser(name, help=text)
        p.add_argument("attachment_ids", metavar="<attachment-id>", nargs="+")
    p = sub.add_parser("attachment-show", help="show one attachment")
    p.add_argument("attachment_id", metavar="<attachment-id>")
    p = sub.add_parser("attachment-list", help="list attachments")
    p.add_argument("--volume-id")
    p.add_argument("--status")

    p = sub.add_parser("volume-create", help="create a volume")
    p.add_argument("size", type=int, metavar="<size>", help="size in GiB")
    p.add_argument("--name")
    p.add_argument("--multiattach", action="store_true", help="allow several hosts at once")
    p.add_argument("--source", help="block backend: path of the existing device to register")
    for name, text in (("volume-show", "show a volume"), ("volume-delete", "delete a volume")):
        p = sub.add_parser(name, help=text)
        p.add_argument("volume_id", metavar="<volume-id>")
    sub.add_parser("volume-list", help="list volumes")
    sub.add_parser("status", help="the daemon's health: ready, last reconcile, counts")
    host.add_commands(sub)
    p = sub.add_parser("volume-extend", help="grow a volume")
    p.add_argument("volume_id", metavar="<volume-id>")
    p.add_argument("new_size", type=int, metavar="<new-size>", help="new size in GiB")
    return top


def run(args: argparse.Namespace, client: Client) -> str:
    ok = client.checked         # an error answer raises the exception of its status
    fmt, secrets = args.format, args.show_secrets
    cmd = args.command
    if cmd in ("attach", "detach"):
        return host.run(args, client)
    if cmd == "attachment-create":
        body: dict[str, Any] = {"volume_uuid": args.volume_id, "instance_uuid": args.instance_uuid}
        if args.connect:
            body["connector"] = connector(args)
        if args.mode:
            body["mode"] = args.mode
        att = ok(client.call("POST", "/attachments", {"attachment": body}), 200)["attachment"]
        return output.show_attachment(att, fmt, secrets)
    if cmd == "attachment-update":
        att = ok(client.call("PUT", f"/attachments/{segment(args.attachment_id)}",
                             {"attachment": {"connector": connector(args)}}), 200)["attachment"]
        return output.show_attachment(att, fmt, secrets)
    if cmd in ("attachment-complete", "attachment-delete"):
        for att_id in args.attachment_ids:
            if cmd == "attachment-complete":
                ok(client.call("POST", f"/attachments/{segment(att_id)}/action",
                               {"os-complete": None}), 204)
            else:
                ok(client.call("DELETE", f"/attachments/{segment(att_id)}"), 200)
        return ""
    if cmd == "attachment-show":
        att = ok(client.call("GET", f"/attachments/{segment(args.attachment_id)}"),
                 200)["attachment"]
        return output.show_attachment(att, fmt, secrets)
    if cmd == "attachment-list":
        items = ok(client.call("GET", "/attachments" + query(volume_id=args.volume_id,
                                                             status=args.status)), 200)
        return output.show_list(items["attachments"], ATTACHMENT_COLUMNS, fmt)
    return run_volume(args, client, ok)


def run_volume(args: argparse.Namespace, client: Client, ok) -> str:
    cmd, fmt = args.command, args.format
    if cmd == "status":
        health = ok(client.call("GET", "/healthz", root=True), 200, 503)
        # Older daemons do not say; then there is nothing to warn about.
        if health.get("auth_strategy") == "noauth":
            warn(NOAUTH_WARNING)
        if fmt == "json":
            return output.show_object(health, fmt)
        flat = {"ready": health["ready"], **{f"count {k}": v for k, v in
                                               health["counts"].items()}}
        if "auth_strategy" in health:
            flat["auth strategy"] = health["auth_strategy"]
        for k, v in (health.get("last_reconcile") or {}).items():
            flat[f"last reconcile {k}"] = v
        return output.show_object(flat, fmt)
    if cmd == "volume-create":
        body = {"size": args.size, "name": args.name, "multiattach": args.multiattach}
        if args.source:
            body["source"] = args.source
        vol = ok(client.call("POST", "/volumes", {"volume": body}), 202)["volume"]
        return output.show_object(vol, fmt)
    if cmd == "volume-show":
        return output.show_object(ok(client.call("GET", f"/volumes/{segment(args.volume_id)}"),
                                     200)["volume"], fmt)
    if cmd == "volume-list":
        vols = ok(client.call("GET", "/volumes/detail"), 200)["volumes"]
        return output.show_list(vols, VOLUME_COLUMNS, fmt)
    if cmd == "volume-delete":
        ok(client.call("DELETE", f"/volumes/{segment(args.volume_id)}"), 202)
        return ""
    ok(client.call("POST", f"/volumes/{segment(args.volume_id)}/action",
                   {"os-extend": {"new_size": args.new_size}}), 202)
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        token = find_token(args.token_file)
        client = Client(args.url, token.value, API_VERSION, cacert=args.cacert,
                        unauthorized=token.unauthorized())
        text = run(args, client)
    except IscsiAttachError as exc:
        print(f"{ERROR}{one_line(str(exc))}", file=sys.stderr)
        return exit_code(exc)       # the exception tree's table: 2 for bad input
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
