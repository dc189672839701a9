"""`iscsiattach attach` / `detach`: the host side, over the daemon's API."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from iscsiattach.cli import output
from iscsiattach.cli.client import Client, query, segment

DEFAULT_STATE = "/var/lib/iscsiattach-host"


class ApiAdapter:
    """The daemon's API as the host side needs it; HTTP errors become ours
    (``Client.checked``: a 404 NotFound, which detach relies on, ...)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._ok = client.checked

    def attachment_create(self, volume_id, instance, connector, mode) -> dict:
        body = {"volume_uuid": volume_id, "instance_uuid": instance, "connector": connector}
        # "mode" came with 3.54; below it (--os-volume-api-version) an
        # attachment is rw, and asking for ro is refused before this.
        if mode != "rw" or _has_mode(self.client.version):
            body["mode"] = mode
        return self._ok(self.client.call("POST", "/attachments", {"attachment": body}),
                        200)["attachment"]

    def attachment_complete(self, attachment_id) -> None:
        self._ok(self.client.call("POST", f"/attachments/{segment(attachment_id)}/action",
                                  {"os-complete": None}), 204)

    def attachment_delete(self, attachment_id) -> None:
        self._ok(self.client.call("DELETE", f"/attachments/{segment(attachment_id)}"), 200)

    def attachment_list(self, volume_id) -> list[dict]:
        return self._ok(self.client.call("GET", "/attachments" + query(volume_id=volume_id)),
                        200)["attachments"]

    def volume_size_gib(self, volume_id) -> int:
        vol = self._ok(self.client.call("GET", f"/volumes/{segment(volume_id)}"), 200)
        return vol["volume"]["size"]


def _has_mode(version: str) -> bool:
    if version == "latest":
        return True
    major, _, minor = version.partition(".")
    return (int(major), int(minor or 0)) >= (3, 54)


def run(args: argparse.Namespace, client: Client) -> str:
    from iscsiattach.host import brick
    from iscsiattach.host.attach import HostSide
    state = os.environ.get("ISCSIATTACH_HOST_STATE", DEFAULT_STATE)
    brick.setup(os.path.join(state, "locks"))
    side = HostSide(ApiAdapter(client), brick, state,
                    progress=lambda msg: print(f"... {msg}", file=sys.stderr, flush=True))
    # Errors (StepFailed, Conflict...) go up to main, which prints them.
    if args.command == "attach":
        got = side.attach(args.volume_id, args.instance, args.mode or "rw", args.multipath,
                          args.my_ip)
        return output.show_object(dataclasses.asdict(got), args.format)
    done = side.detach(args.ident, args.force)
    return output.show_object({"detached": done}, args.format) if done else ""
