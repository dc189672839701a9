"""iscsiattach: talk to iscsiattachd with the devref's commands.

    iscsiattach attachment-create <volume-id> <instance-uuid> [--connect True] ...
    iscsiattach attachment-update <attachment-id> --initiator IQN ...
    iscsiattach attachment-complete|attachment-delete|attachment-show <attachment-id>
    iscsiattach attachment-list [--volume-id ID] [--status S]
    iscsiattach session-list [--volume-id ID]
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
import socket
import sys
from typing import Any

from iscsiattach.cli import apiversion, host, logs, output
from iscsiattach.cli.args import ERROR, one_line, parser
from iscsiattach.cli.client import Client, find_token, query, segment
from iscsiattach.exception import InvalidInput, IscsiAttachError, exit_code
from iscsiattach.host.initiator import local_initiator

WARNING = "iscsiattach: warning: "
NOAUTH_WARNING = ("the daemon runs without authentication (auth_strategy noauth): "
                  "any local user who can reach its API can call it")


def warn(message: str) -> None:
    print(f"{WARNING}{one_line(message)}", file=sys.stderr)


def connector(args: argparse.Namespace) -> dict[str, Any]:
    initiator = args.initiator or local_initiator()
    if not initiator:
        raise InvalidInput("no initiator: pass --initiator IQN "
                           "(no /etc/iscsi/initiatorname.iscsi)")
    return {"initiator": initiator, "ip": args.ip, "host": args.host or socket.gethostname(),
            "platform": args.platform, "os_type": args.ostype, "multipath": args.multipath,
            "mountpoint": args.mountpoint}


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
        return output.show_attachments(items["attachments"], fmt)
    if cmd == "session-list":
        items = ok(client.call("GET", "/sessions" + query(volume_id=args.volume_id)), 200)
        return output.show_sessions(items["sessions"], fmt)
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
        return output.show_created_volume(vol, fmt)
    if cmd == "volume-show":
        return output.show_volume(ok(client.call("GET", f"/volumes/{segment(args.volume_id)}"),
                                     200)["volume"], fmt)
    if cmd == "volume-list":
        vols = ok(client.call("GET", "/volumes/detail"), 200)["volumes"]
        return output.show_volumes(vols, fmt)
    if cmd == "volume-delete":
        ok(client.call("DELETE", f"/volumes/{segment(args.volume_id)}"), 202)
        return ""
    ok(client.call("POST", f"/volumes/{segment(args.volume_id)}/action",
                   {"os-extend": {"new_size": args.new_size}}), 202)
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.debug)
    try:
        version = apiversion.ApiVersion.parse(args.api_version)
        apiversion.check(version, args.command, args)
        token = find_token(args.token_file)
        client = Client(args.url, token.value, version.header, cacert=args.cacert,
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
