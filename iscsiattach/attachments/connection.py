"""Connectors in, connection_info out, and per-attachment CHAP credentials.

The connector is os-brick's ``get_connector_properties()`` dict as the
caller sent it (plus mountpoint/mode); we keep it whole and read only what
iSCSI needs. connection_info uses Cinder's and os-brick's field names.
"""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from iscsiattach.exception import InvalidInput
from iscsiattach.model import ChapCredentials, ExportInfo, validate_iqn
from iscsiattach.secret import Secret

MODES = ("rw", "ro")
_USER_CHARS = string.ascii_letters + string.digits
MAX_CONNECTOR_BYTES = 16 << 10


@dataclass(frozen=True)
class Connector:
    initiator: str
    host: str | None
    multipath: bool
    mode: str | None        # "ro"/"rw" when the connector asks for one
    raw: dict[str, Any]

    @classmethod
    def parse(cls, raw: Any) -> Connector:
        if not isinstance(raw, dict):
            raise InvalidInput("connector must be an object")
        if len(repr(raw)) > MAX_CONNECTOR_BYTES:
            raise InvalidInput("connector is too large")
        initiator = raw.get("initiator")
        if not initiator:
            raise InvalidInput("connector has no 'initiator': an iSCSI attachment needs "
                               "the host's initiator IQN")
        validate_iqn(initiator)
        host = raw.get("host")
        if host is not None and (not isinstance(host, str) or len(host) > 255):
            raise InvalidInput(f"invalid connector host {host!r}")
        multipath = raw.get("multipath", False)
        if isinstance(multipath, str) and multipath.lower() in ("true", "false"):
            multipath = multipath.lower() == "true"
        if not isinstance(multipath, bool):
            raise InvalidInput(f"invalid connector multipath {multipath!r}")
        mode = raw.get("mode")
        if mode is not None:
            validate_mode(mode)
        return cls(initiator, host, multipath, mode, dict(raw))


def validate_mode(mode: Any) -> str:
    if mode not in MODES:
        raise InvalidInput(f"invalid attach mode {mode!r}: expected rw or ro")
    return mode


def new_chap() -> ChapCredentials:
    """Fresh credentials for one attachment, from the secrets module."""
    userid = "".join(secrets.choice(_USER_CHARS) for _ in range(20))
    return ChapCredentials(userid, Secret.generate())


def connection_info(export: ExportInfo, chap: ChapCredentials, *, attachment_id: str,
                    mode: str, multipath: bool) -> dict[str, Any]:
    """The iSCSI connection_info of a v3 attachment: flat, as Cinder stores it
    (Nova moves all but driver_volume_type under "data"). auth_password stays
    a Secret until the edge serialises it."""
    first = export.portals[0]
    info: dict[str, Any] = {
        "driver_volume_type": "iscsi",
        "target_discovered": False,
        "target_iqn": export.target_iqn,
        "target_portal": str(first),
        "target_lun": export.lun,
        "volume_id": export.volume_id,
        "auth_method": "CHAP",
        "auth_username": chap.userid,
        "auth_password": chap.password,
        "access_mode": mode,
        "encrypted": False,
        "qos_specs": None,
        "attachment_id": attachment_id,
    }
    if len(export.portals) > 1 or multipath:
        info["target_iqns"] = [export.target_iqn] * len(export.portals)
        info["target_portals"] = [str(p) for p in export.portals]
        info["target_luns"] = [export.lun] * len(export.portals)
    return info
