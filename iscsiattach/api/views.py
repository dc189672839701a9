"""JSON views of volumes and attachments, with Cinder's field names.

The only place a CHAP secret is revealed is ``connection_info`` in a
response to the caller that created or connected the attachment.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from iscsiattach.attachments.sessions import Session
from iscsiattach.secret import Secret
from iscsiattach.store import Attachment, Volume


def timestamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def attachment_summary(att: Attachment) -> dict[str, Any]:
    return {"id": att.id, "status": att.status, "instance": att.instance_uuid,
            "volume_id": att.volume_id}


def attachment_detail(att: Attachment, connection_info: dict | None = None) -> dict[str, Any]:
    out = attachment_summary(att)
    out.update({"attached_at": timestamp(att.attached_at) or "",
                "detached_at": timestamp(att.detached_at) or "",
                "attach_mode": att.attach_mode,
                "connection_info": reveal(connection_info) if connection_info else {}})
    return out


def session(s: Session) -> dict[str, Any]:
    return {"volume_id": s.volume_id, "target_iqn": s.target_iqn, "initiator": s.initiator,
            "addresses": list(s.addresses), "auth_username": s.auth_username,
            "session_id": s.session_id, "state": s.state,
            "attachment_ids": list(s.attachment_ids), "seen_since": timestamp(s.seen_since)}


def reveal(info: dict[str, Any]) -> dict[str, Any]:
    """connection_info for the wire: the caller needs the CHAP secret."""
    return {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in info.items()}


def volume_links(base_url: str, project: str | None, volume_id: str) -> list[dict]:
    path = f"{project}/volumes/{volume_id}" if project else f"volumes/{volume_id}"
    return [{"rel": "self", "href": f"{base_url}/v3/{path}"},
            {"rel": "bookmark", "href": f"{base_url}/{path}"}]


def volume_summary(vol: Volume, links: list[dict]) -> dict[str, Any]:
    return {"id": vol.id, "name": vol.name, "links": links}


def volume_detail(vol: Volume, attachments: list[Attachment], links: list[dict],
                  project: str | None, backstore: str | None = None) -> dict[str, Any]:
    attached = [a for a in attachments if a.status == "attached"]
    return {
        "id": vol.id, "name": vol.name, "description": None, "size": vol.size_gib,
        "status": vol.status, "availability_zone": "nova",
        "created_at": timestamp(vol.created_at), "updated_at": timestamp(vol.updated_at),
        "volume_type": None, "snapshot_id": None, "source_volid": None,
        "replication_status": None, "consistencygroup_id": None, "user_id": None,
        "metadata": {}, "links": links, "bootable": "false", "encrypted": False,
        "multiattach": vol.multiattach,
        "os-vol-tenant-attr:tenant_id": project,
        # Ours: how LIO serves it (iblock, fileio-direct, fileio-page-cache).
        "iscsiattach:backstore": backstore,
        # Cinder lists attached attachments only, with the volume id as "id".
        "attachments": [{"id": vol.id, "attachment_id": a.id, "volume_id": vol.id,
                         "server_id": a.instance_uuid, "host_name": a.host,
                         "device": (a.connector or {}).get("mountpoint"),
                         "attached_at": timestamp(a.attached_at)} for a in attached],
    }
