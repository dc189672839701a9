"""Volume data through kills: a real initiator keeps a session to one
volume while the daemon is killed and restarted again and again.

Before each kill a new block of random data is written (direct I/O, then
fsync: the target acknowledged it); after each restart every block written
so far is read back from the LUN and compared, and the session must still
be the one it was (the restart must not rebuild a live export).
"""
from __future__ import annotations

import hashlib
import os
import uuid

from iscsiattach.model import Portal
from tests.functional.crash import Ctx
from tests.functional.iscsi import Node, checksum_io, initiator_name

BLOCK = 64 << 10


class DataVolume:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.vid = ctx.outside.volume()
        att, info = ctx.outside.svc.attachment_service.create(
            self.vid, str(uuid.uuid4()),
            {"initiator": initiator_name(), "ip": "127.0.0.1", "host": "crash-data"})
        ctx.outside.svc.attachment_service.complete(att.id)
        ctx.held.add(att.id)
        self.node = Node(info["target_iqn"], Portal.parse(info["target_portal"]))
        self.node.setup(info["auth_username"], info["auth_password"].reveal())
        assert self.node.login_retrying().returncode == 0
        self.dev = self.node.device()
        self.session = self.node.session_dirs()
        self.blocks: dict[int, str] = {}        # offset -> sha256 of what was written

    def write_next(self) -> None:
        offset = len(self.blocks) * BLOCK
        data = os.urandom(BLOCK)
        assert checksum_io(self.dev, BLOCK, data, offset) == hashlib.sha256(data).hexdigest()
        self.blocks[offset] = hashlib.sha256(data).hexdigest()

    def problems(self) -> list[str]:
        out = []
        if self.node.session_dirs() != self.session or \
                self.node.session_state() != "LOGGED_IN":
            out.append(f"data volume {self.vid}: the session was dropped or replaced")
        for offset, want in self.blocks.items():
            if checksum_io(self.dev, BLOCK, offset=offset) != want:
                out.append(f"data volume {self.vid}: block at {offset} differs")
        return out

    def close(self) -> list[str]:
        """Log out and delete the attachment through the API; what failed."""
        self.node.delete()
        status, body = self.ctx.call("GET", f"/attachments?volume_id={self.vid}")
        for att in body["attachments"] if status == 200 else []:
            self.ctx.call("DELETE", f"/attachments/{att['id']}")
            self.ctx.held.discard(att["id"])
        status, _ = self.ctx.call("DELETE", f"/volumes/{self.vid}")
        return [] if status == 202 else [f"data volume {self.vid}: delete answered {status}"]
