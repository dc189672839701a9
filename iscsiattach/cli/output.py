"""Output: cinderclient's tables, or JSON for scripts.

Tables are cinderclient's, byte for byte (``table``): attachment-show and
the connection info, attachment-list, volume-show and volume-list as
`cinder attachment-show`, `attachment-list`, `show` and `list` print them.

Secrets: the CHAP secrets in connection_info are shown only with
--show-secrets. In a table a withheld secret reads ``***``, for a person; in
JSON, which a script reads, it is ``null`` and ``"<key>_withheld": true``
says why: never a fake value that a script would take for the password.
"""
from __future__ import annotations

import json
from typing import Any

from iscsiattach.cli.table import list_table, property_table

MASK = "***"
SECRET_KEYS = ("auth_password", "discovery_auth_password")
WITHHELD = "_withheld"
ATTACHMENT_COLUMNS = [("id", "ID"), ("volume_id", "Volume ID"), ("status", "Status"),
                      ("instance", "Server ID")]
SESSION_COLUMNS = [("volume_id", "Volume ID"), ("initiator", "Initiator"),
                   ("address", "Address"), ("auth_username", "CHAP user"),
                   ("session_id", "Session"), ("state", "State"), ("seen_since", "Seen since")]
# cinderclient's `list`: a column is left out when the volumes lack its field
# (consumes_quota comes with API 3.65; with no volume every column shows).
VOLUME_COLUMNS = [("id", "ID"), ("status", "Status"), ("name", "Name"), ("size", "Size"),
                  ("consumes_quota", "Consumes Quota"), ("volume_type", "Volume Type"),
                  ("bootable", "Bootable"), ("attached_to", "Attached to")]
# cinderclient's `show` prints these dicts as "key : value" lines.
VOLUME_DICT_CELLS = ("metadata", "volume_image_metadata", "attachment_ids", "attached_servers")


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def withheld(info: dict[str, Any]) -> dict[str, Any]:
    """connection_info for JSON without --show-secrets: each secret that was
    there is null, and "<key>_withheld": true says it was held back."""
    out = dict(info)
    for key in SECRET_KEYS:
        if out.get(key):
            out[key] = None
            out[key + WITHHELD] = True
    return out


def masked(info: dict[str, Any]) -> dict[str, Any]:
    """connection_info for a table without --show-secrets."""
    return {k: (MASK if k in SECRET_KEYS and v else v) for k, v in info.items()}


def show_attachment(att: dict[str, Any], fmt: str, show_secrets: bool) -> str:
    att = dict(att)
    info = att.pop("connection_info", None) or {}
    if fmt == "json":
        return to_json({**att, "connection_info": info if show_secrets else withheld(info)})
    out = property_table(att)       # sessions in one cell, as cinderclient shows them
    if info:
        out += "\n" + property_table(info if show_secrets else masked(info))
    return out


def show_sessions(items: list[dict[str, Any]], fmt: str) -> str:
    """Who is logged in: a row per session, its connections' addresses joined."""
    if fmt == "json":
        return to_json(items)
    rows = [{**s, "address": ",".join(s.get("addresses") or [])} for s in items]
    return list_table(rows, SESSION_COLUMNS)


def show_attachments(items: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return to_json(items)
    return list_table(items, ATTACHMENT_COLUMNS)


def show_object(obj: dict[str, Any], fmt: str) -> str:
    return to_json(obj) if fmt == "json" else property_table(obj)


def show_volume(vol: dict[str, Any], fmt: str) -> str:
    """As `cinder show`: links left out, ``readonly`` from the metadata, the
    attachments as two lists (attachment_ids, attached_servers)."""
    if fmt == "json":
        return to_json(vol)
    info = _without_links(vol)
    attachments = info.pop("attachments", None) or []
    info["attachment_ids"] = [a.get("attachment_id") for a in attachments]
    info["attached_servers"] = [a.get("server_id") for a in attachments]
    return property_table(info, VOLUME_DICT_CELLS)


def show_created_volume(vol: dict[str, Any], fmt: str) -> str:
    """As `cinder create`: the volume without its links."""
    if fmt == "json":
        return to_json(vol)
    return property_table(_without_links(vol))


def _without_links(vol: dict[str, Any]) -> dict[str, Any]:
    """A volume as cinderclient shows it: no links, ``readonly`` from its metadata."""
    info = dict(vol)
    if "readonly" in (info.get("metadata") or {}):
        info["readonly"] = info["metadata"]["readonly"]
    info.pop("links", None)
    return info


def show_volumes(vols: list[dict[str, Any]], fmt: str) -> str:
    """As `cinder list`: "Attached to" joins the servers of its attachments."""
    if fmt == "json":
        return to_json(vols)
    rows = []
    for vol in vols:
        row = dict(vol)
        if "volume_type" not in row and "volumeType" in row:
            row["volume_type"] = row["volumeType"]
        servers = [a.get("server_id") for a in vol.get("attachments") or []]
        row["attached_to"] = ",".join(str(s) for s in servers)
        rows.append(row)
    return list_table(rows, VOLUME_COLUMNS, drop_missing=True)
