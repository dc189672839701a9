"""Identifiers from callers: UUIDs in their canonical form, or a clear error."""
from __future__ import annotations

import uuid
from typing import Any

from iscsiattach.exception import InvalidInput


def parse_uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidInput(f"invalid {what} {value!r}: expected a UUID") from None
